"""Fast-path check: a lifted ``jit`` train step vs. a hand-written ``jax.jit`` over a dict.

Not collected by pytest (leading underscore) and never asserted: run it by hand,

    python packages/core/tests/_perf_check.py [--depth 100] [--width 32] [--batch 16]

It builds a depth-``depth`` MLP whose blocks are Linear + BatchNorm (running statistics)
+ a call counter, and times one SGD step (value_and_grad + parameter update + statistics
update) written twice: with plait objects under ``plait.core.jit`` and as a pure function
of a dict of arrays under ``jax.jit``. It prints both per-step times and their ratio (the
fast path's target is <= 1.2), plus the Python overhead per call measured with a tiny
batch, where dispatch dominates.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
from plait import core as pc


class Linear(pc.Object):
    def __init__(self, key: jax.Array, width: int):
        self.w = pc.Param(jax.random.normal(key, (width, width)) * (1.0 / width) ** 0.5)
        self.b = pc.Param(jnp.zeros(width))

    def __call__(self, x: jax.Array) -> jax.Array:
        return x @ self.w[...] + self.b[...]


class BatchNorm(pc.Object):
    def __init__(self, width: int):
        self.scale = pc.Param(jnp.ones(width))
        self.bias = pc.Param(jnp.zeros(width))
        self.mean = pc.BatchStat(jnp.zeros(width))
        self.var = pc.BatchStat(jnp.ones(width))

    def __call__(self, x: jax.Array) -> jax.Array:
        m = x.mean(0)
        v = x.var(0)
        self.mean[...] = 0.9 * self.mean[...] + 0.1 * m
        self.var[...] = 0.9 * self.var[...] + 0.1 * v
        return (x - m) / jnp.sqrt(v + 1e-5) * self.scale[...] + self.bias[...]


class Block(pc.Object):
    def __init__(self, key: jax.Array, width: int):
        self.linear = Linear(key, width)
        self.norm = BatchNorm(width)
        self.calls = pc.Variable(jnp.array(0, dtype=jnp.int32))

    def __call__(self, x: jax.Array) -> jax.Array:
        self.calls[...] += 1
        return jax.nn.relu(self.norm(self.linear(x)))


class MLP(pc.Object):
    def __init__(self, depth: int, width: int):
        self.blocks = [Block(jax.random.fold_in(jax.random.key(0), i), width) for i in range(depth)]

    def __call__(self, x: jax.Array) -> jax.Array:
        for block in self.blocks:
            x = block(x)
        return x


def plait_step_fn(lr: float):
    def loss_fn(model: MLP, x: jax.Array, y: jax.Array) -> jax.Array:
        return jnp.mean((model(x) - y) ** 2)

    @pc.jit
    def step(model: MLP, x: jax.Array, y: jax.Array) -> jax.Array:
        loss, grads = pc.value_and_grad(loss_fn)(model, x, y)
        params = pc.state(model, pc.Param)
        pc.update(model, jax.tree.map(lambda p, g: p - lr * g, params, grads))
        return loss

    return step


def dict_state(depth: int, width: int) -> dict[str, dict[str, jax.Array]]:
    out = {}
    for i in range(depth):
        key = jax.random.fold_in(jax.random.key(0), i)
        out[f"b{i}"] = {
            "w": jax.random.normal(key, (width, width)) * (1.0 / width) ** 0.5,
            "b": jnp.zeros(width),
            "scale": jnp.ones(width),
            "bias": jnp.zeros(width),
            "mean": jnp.zeros(width),
            "var": jnp.ones(width),
            "calls": jnp.array(0, dtype=jnp.int32),
        }
    return out


PARAM_KEYS = ("w", "b", "scale", "bias")


def dict_step_fn(depth: int, lr: float):
    def loss_fn(params, stats, x, y):
        new_stats = {}
        for i in range(depth):
            p, s = params[f"b{i}"], stats[f"b{i}"]
            h = x @ p["w"] + p["b"]
            m, v = h.mean(0), h.var(0)
            new_stats[f"b{i}"] = {
                "mean": 0.9 * s["mean"] + 0.1 * m,
                "var": 0.9 * s["var"] + 0.1 * v,
                "calls": s["calls"] + 1,
            }
            x = jax.nn.relu((h - m) / jnp.sqrt(v + 1e-5) * p["scale"] + p["bias"])
        return jnp.mean((x - y) ** 2), new_stats

    @jax.jit
    def step(state, x, y):
        params = {k: {n: v[n] for n in PARAM_KEYS} for k, v in state.items()}
        stats = {k: {n: v[n] for n in ("mean", "var", "calls")} for k, v in state.items()}
        (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, stats, x, y)
        out = {}
        for k in state:
            out[k] = {n: params[k][n] - lr * grads[k][n] for n in PARAM_KEYS}
            out[k].update(new_stats[k])
        return out, loss

    return step


def time_per_call(fn, n: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            out = fn()
        jax.block_until_ready(out)
        best = min(best, (time.perf_counter() - start) / n)
    return best


def measure(depth: int, width: int, batch: int, n: int, repeats: int, *, counters_only: bool = False) -> tuple[float, float]:
    """Best per-step times (plait, dict), runs interleaved so machine noise hits both."""
    lr = 0.01
    x = jnp.ones((batch, width))
    y = jnp.zeros((batch, width))
    model = MLP(depth, width)
    state = dict_state(depth, width)
    if counters_only:
        step, dstep = plait_count_fn(), dict_count_fn()
    else:
        step, dstep = plait_step_fn(lr), dict_step_fn(depth, lr)
    holder = {"state": state}

    def run_dict():
        holder["state"], loss = dstep(holder["state"], x, y)
        return loss

    def run_plait():
        return step(model, x, y)

    for _ in range(3):
        jax.block_until_ready(run_plait())
        jax.block_until_ready(run_dict())
    # Same math: both sides must agree after the same number of steps.
    loss_p, loss_d = run_plait(), run_dict()
    assert jnp.allclose(loss_p, loss_d, rtol=1e-4), (loss_p, loss_d)
    t_plait = t_dict = float("inf")
    for _ in range(repeats):
        t_plait = min(t_plait, time_per_call(run_plait, n, 1))
        t_dict = min(t_dict, time_per_call(run_dict, n, 1))
    return t_plait, t_dict


def plait_count_fn():
    @pc.jit
    def step(model: MLP, x: jax.Array, y: jax.Array) -> jax.Array:
        for block in model.blocks:
            block.calls[...] += 1
        return jnp.sum(x - y)

    return step


def dict_count_fn():
    @jax.jit
    def step(state, x, y):
        out = {k: {**v, "calls": v["calls"] + 1} for k, v in state.items()}
        return out, jnp.sum(x - y)

    return step


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    a = parser.parse_args()
    t_plait, t_dict = measure(a.depth, a.width, a.batch, a.steps, a.repeats)
    print(f"depth={a.depth} width={a.width} batch={a.batch} ({7 * a.depth} arrays of state)")
    print(f"  plait.core.jit step : {t_plait * 1e6:9.1f} us")
    print(f"  jax.jit dict step   : {t_dict * 1e6:9.1f} us")
    print(f"  ratio               : {t_plait / t_dict:9.3f}  (target <= 1.2)")
    # Dispatch-bound variant: the same 700 arrays in and out, trivial compute (counters).
    t_plait, t_dict = measure(a.depth, a.width, a.batch, a.steps, a.repeats, counters_only=True)
    print(f"depth={a.depth}: only the counters change (dispatch-bound)")
    print(f"  plait.core.jit step : {t_plait * 1e6:9.1f} us")
    print(f"  jax.jit dict step   : {t_dict * 1e6:9.1f} us")
    print(f"  ratio               : {t_plait / t_dict:9.3f}")
    print(f"  python overhead     : {(t_plait - t_dict) * 1e6:9.1f} us per call")

if __name__ == "__main__":
    main()
