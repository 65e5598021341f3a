"""(a) Train-step cost of a deep narrow MLP, where Python overhead, not FLOPs, dominates.

Each block is Linear + BatchNorm (batch statistics, running averages) + a step-counter
Variable; width 32, batch 16, a mean-squared-error loss, optax SGD or Adam. Variants:

- the floor: the same math written by hand as one ``jax.jit`` over a dict of arrays
  (BatchNorm with the layers' one-pass variance, so only the framework differs);
- the floor over Linen's variable layout (``{'params': {'Block_0': {'Dense_0': ...}}}``,
  ``batch_stats`` and ``counter`` collections): the same hand-written step, but the
  arguments are as deep as Linen's variables, whose extra dict levels cost JAX's argument
  flattening a few percent at every call. Linen rows are also compared with it
  ("x same layout"), which separates what the framework adds from what the layout costs;
- ``nnx.jit`` (the idiomatic stateful step over model and optimizer objects) and the
  split/merge fast path (``split`` once, ``jax.jit`` a function that merges inside), both
  written once against the Flax API and run with ``plait.nnx`` and ``flax.nnx``;
- Linen (``init`` / ``apply`` inside a ``jax.jit`` step), with ``plait.linen`` and
  ``flax.linen``;
- Equinox: ``eqx.nn.Linear`` + ``eqx.nn.BatchNorm`` (``mode="batch"``) + an
  ``eqx.nn.StateIndex`` counter, stepped with ``eqx.filter_jit`` and with the
  ``partition``/``combine`` fast path.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import jax
import jax.numpy as jnp
import optax

from .._timing import calibrate_inner, interleaved
from ._common import FLOOR, Context, add_rows, select

WIDTH, BATCH, EPS, MOMENTUM = 32, 16, 1e-5, 0.99

Step = Callable[[], jax.Array]


def make_optimizer(name: str) -> optax.GradientTransformation:
    return {"sgd": optax.sgd(1e-3), "adam": optax.adam(1e-3)}[name]


def batch(seed: int = 0) -> tuple[jax.Array, jax.Array]:
    kx, ky = jax.random.split(jax.random.key(seed))
    return jax.random.normal(kx, (BATCH, WIDTH)), jax.random.normal(ky, (BATCH, WIDTH))


def _stepper(step: Callable[..., tuple[Any, jax.Array]], state: Any, *args: Any) -> Step:
    """A zero-argument call that advances ``state`` by one ``step`` and returns the loss."""
    box = [state]

    def call() -> jax.Array:
        box[0], loss = step(box[0], *args)
        return loss

    return call


# ----------------------------------------------------------------------------- floor


def floor_batch_norm(x: jax.Array, scale: jax.Array, shift: jax.Array) -> tuple[jax.Array, ...]:
    """Training-mode BatchNorm with the one-pass variance ``E[x^2] - E[x]^2`` of the layers."""
    mean = x.mean(0)
    var = jnp.maximum(0.0, jnp.square(x).mean(0) - jnp.square(mean))
    y = (x - mean) * (jax.lax.rsqrt(var + EPS) * scale) + shift
    return y, mean, var


def floor_variant(depth: int, opt: str) -> Step:
    """Hand-written JAX: params / batch statistics / counters as dicts of arrays."""
    tx = make_optimizer(opt)
    keys = jax.random.split(jax.random.key(0), depth)
    params = {
        f"block{i}": {
            "kernel": jax.random.normal(keys[i], (WIDTH, WIDTH)) / jnp.sqrt(WIDTH),
            "bias": jnp.zeros(WIDTH), "scale": jnp.ones(WIDTH), "shift": jnp.zeros(WIDTH),
        }
        for i in range(depth)
    }
    stats = {f"block{i}": {"mean": jnp.zeros(WIDTH), "var": jnp.ones(WIDTH)} for i in range(depth)}
    counts = {f"block{i}": jnp.zeros((), jnp.int32) for i in range(depth)}
    state = {"params": params, "stats": stats, "counts": counts, "opt": tx.init(params)}

    def forward(params, stats, x):
        new_stats = {}
        for i in range(depth):
            p, s = params[f"block{i}"], stats[f"block{i}"]
            x, mean, var = floor_batch_norm(x @ p["kernel"] + p["bias"], p["scale"], p["shift"])
            new_stats[f"block{i}"] = {
                "mean": MOMENTUM * s["mean"] + (1 - MOMENTUM) * mean,
                "var": MOMENTUM * s["var"] + (1 - MOMENTUM) * var,
            }
            x = jax.nn.relu(x)
        return x, new_stats

    def stats_of(state):
        return state["stats"]

    def rest_after(state, new_stats):
        return {"stats": new_stats, "counts": jax.tree.map(lambda c: c + 1, state["counts"])}

    return _stepper(_hand_written_step(tx, forward, stats_of, rest_after), state, *batch())


def _hand_written_step(tx: optax.GradientTransformation, forward: Callable, stats_of: Callable,
                       rest_after: Callable) -> Callable:
    """The floors' jitted step; ``stats_of`` / ``rest_after`` read and rebuild their layout."""

    @jax.jit
    def step(state, x, y):
        def loss_fn(params):
            out, new_stats = forward(params, stats_of(state), x)
            return jnp.mean((out - y) ** 2), new_stats

        (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        updates, opt_state = tx.update(grads, state["opt"], state["params"])
        return {
            "params": optax.apply_updates(state["params"], updates),
            **rest_after(state, jax.lax.stop_gradient(new_stats)),
            "opt": opt_state,
        }, loss

    return step


LINEN_LAYOUT_FLOOR = "floor (linen layout)"


def linen_layout_floor_variant(depth: int, opt: str) -> Step:
    """The floor's step over Linen's variable layout (nested collections), written by hand."""
    tx = make_optimizer(opt)
    keys = jax.random.split(jax.random.key(0), depth)
    blocks = [f"Block_{i}" for i in range(depth)]
    params = {
        name: {
            "Dense_0": {"kernel": jax.random.normal(keys[i], (WIDTH, WIDTH)) / jnp.sqrt(WIDTH),
                        "bias": jnp.zeros(WIDTH)},
            "BatchNorm_0": {"scale": jnp.ones(WIDTH), "bias": jnp.zeros(WIDTH)},
        }
        for i, name in enumerate(blocks)
    }
    rest = {
        "batch_stats": {name: {"BatchNorm_0": {"mean": jnp.zeros(WIDTH), "var": jnp.ones(WIDTH)}}
                        for name in blocks},
        "counter": {name: {"count": jnp.zeros((), jnp.int32)} for name in blocks},
    }
    state = {"params": params, "rest": rest, "opt": tx.init(params)}

    def forward(params, stats, x):
        new_stats = {}
        for name in blocks:
            dense, bn = params[name]["Dense_0"], params[name]["BatchNorm_0"]
            s = stats[name]["BatchNorm_0"]
            x, mean, var = floor_batch_norm(x @ dense["kernel"] + dense["bias"], bn["scale"], bn["bias"])
            new_stats[name] = {"BatchNorm_0": {
                "mean": MOMENTUM * s["mean"] + (1 - MOMENTUM) * mean,
                "var": MOMENTUM * s["var"] + (1 - MOMENTUM) * var,
            }}
            x = jax.nn.relu(x)
        return x, new_stats

    def stats_of(state):
        return state["rest"]["batch_stats"]

    def rest_after(state, new_stats):
        counter = jax.tree.map(lambda c: c + 1, state["rest"]["counter"])
        return {"rest": {"batch_stats": new_stats, "counter": counter}}

    return _stepper(_hand_written_step(tx, forward, stats_of, rest_after), state, *batch())


# ----------------------------------------------------------------------------- nnx API


def nnx_model(nnx: ModuleType, depth: int) -> Any:
    """The depth-``depth`` MLP with ``nnx`` (``plait.nnx`` or ``flax.nnx``)."""

    class Count(nnx.Variable):
        pass

    class Block(nnx.Module):
        def __init__(self, rngs):
            self.linear = nnx.Linear(WIDTH, WIDTH, rngs=rngs)
            self.bn = nnx.BatchNorm(WIDTH, momentum=MOMENTUM, epsilon=EPS, rngs=rngs)
            self.count = Count(jnp.zeros((), jnp.int32))

        def __call__(self, x):
            self.count[...] += 1
            return jax.nn.relu(self.bn(self.linear(x)))

    class MLP(nnx.Module):
        def __init__(self, rngs):
            self.blocks = nnx.List([Block(rngs) for _ in range(depth)])

        def __call__(self, x):
            for block in self.blocks:
                x = block(x)
            return x

    return MLP(nnx.Rngs(0))


def _nnx_train_step(nnx: ModuleType, model: Any, optimizer: Any, x: jax.Array, y: jax.Array) -> jax.Array:
    def loss_fn(model):
        return jnp.mean((model(x) - y) ** 2)

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss


def nnx_jit_variant(nnx: ModuleType, depth: int, opt: str) -> Step:
    """The idiomatic stateful step: ``nnx.jit`` over the model and optimizer objects."""
    model = nnx_model(nnx, depth)
    optimizer = nnx.Optimizer(model, make_optimizer(opt), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, x, y):
        return _nnx_train_step(nnx, model, optimizer, x, y)

    x, y = batch()
    return lambda: step(model, optimizer, x, y)


def nnx_split_merge_variant(nnx: ModuleType, depth: int, opt: str) -> Step:
    """The functional fast path: split once, ``jax.jit`` a function that merges inside."""
    model = nnx_model(nnx, depth)
    optimizer = nnx.Optimizer(model, make_optimizer(opt), wrt=nnx.Param)
    graphdef, state = nnx.split((model, optimizer))

    @jax.jit
    def step(state, x, y):
        model, optimizer = nnx.merge(graphdef, state)
        loss = _nnx_train_step(nnx, model, optimizer, x, y)
        return nnx.state((model, optimizer)), loss

    return _stepper(step, state, *batch())


# ----------------------------------------------------------------------------- linen API


def linen_module(nn: ModuleType, depth: int) -> Any:
    """The depth-``depth`` MLP with ``nn`` (``plait.linen`` or ``flax.linen``)."""

    class Block(nn.Module):
        @nn.compact
        def __call__(self, x):
            count = self.variable("counter", "count", lambda: jnp.zeros((), jnp.int32))
            count.value += 1
            x = nn.Dense(WIDTH)(x)
            x = nn.BatchNorm(use_running_average=False, momentum=MOMENTUM, epsilon=EPS)(x)
            return jax.nn.relu(x)

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            for _ in range(depth):
                x = Block()(x)
            return x

    return MLP()


def linen_variant(nn: ModuleType, depth: int, opt: str) -> Step:
    module = linen_module(nn, depth)
    x, y = batch()
    variables = module.init(jax.random.key(0), x)
    tx = make_optimizer(opt)
    params = variables["params"]
    rest = {k: v for k, v in variables.items() if k != "params"}
    state = {"params": params, "rest": rest, "opt": tx.init(params)}

    @jax.jit
    def step(state, x, y):
        def loss_fn(params):
            out, mutated = module.apply({"params": params, **state["rest"]}, x,
                                        mutable=["batch_stats", "counter"])
            return jnp.mean((out - y) ** 2), mutated

        (loss, mutated), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        updates, opt_state = tx.update(grads, state["opt"], state["params"])
        return {"params": optax.apply_updates(state["params"], updates), "rest": mutated,
                "opt": opt_state}, loss

    return _stepper(step, state, x, y)


# ----------------------------------------------------------------------------- equinox


def equinox_model(eqx: ModuleType, depth: int) -> tuple[Any, Any]:
    """The MLP as Equinox writes it: ``(model, state)`` from ``eqx.nn.make_with_state``."""

    class Block(eqx.Module):
        linear: Any
        bn: Any
        count: Any

        def __init__(self, key):
            self.linear = eqx.nn.Linear(WIDTH, WIDTH, key=key)
            self.bn = eqx.nn.BatchNorm(WIDTH, axis_name="batch", eps=EPS, momentum=MOMENTUM,
                                       mode="batch")
            self.count = eqx.nn.StateIndex(jnp.zeros((), jnp.int32))

        def __call__(self, x, state):
            state = state.set(self.count, state.get(self.count) + 1)
            x, state = self.bn(self.linear(x), state)
            return jax.nn.relu(x), state

    class MLP(eqx.Module):
        blocks: list

        def __init__(self, key):
            self.blocks = [Block(k) for k in jax.random.split(key, depth)]

        def __call__(self, x, state):
            for block in self.blocks:
                x, state = block(x, state)
            return x, state

    return eqx.nn.make_with_state(MLP)(jax.random.key(0))


def _equinox_train_step(eqx, tx, model, state, opt_state, x, y):
    def loss_fn(model, state):
        batched = jax.vmap(model, axis_name="batch", in_axes=(0, None), out_axes=(0, None))
        out, state = batched(x, state)
        return jnp.mean((out - y) ** 2), state

    (loss, state), grads = eqx.filter_value_and_grad(loss_fn, has_aux=True)(model, state)
    updates, opt_state = tx.update(grads, opt_state, eqx.filter(model, eqx.is_inexact_array))
    return eqx.apply_updates(model, updates), state, opt_state, loss


def equinox_filter_jit_variant(eqx: ModuleType, depth: int, opt: str) -> Step:
    """Equinox's idiom: ``eqx.filter_jit`` over the model, its state and the optimizer state."""
    model, state = equinox_model(eqx, depth)
    tx = make_optimizer(opt)
    opt_state = tx.init(eqx.filter(model, eqx.is_inexact_array))

    @eqx.filter_jit
    def step(carry, x, y):
        model, state, opt_state, loss = _equinox_train_step(eqx, tx, *carry, x, y)
        return (model, state, opt_state), loss

    return _stepper(step, (model, state, opt_state), *batch())


def equinox_partition_variant(eqx: ModuleType, depth: int, opt: str) -> Step:
    """Equinox's fast path: ``partition`` once, ``jax.jit`` a function that combines inside."""
    model, state = equinox_model(eqx, depth)
    tx = make_optimizer(opt)
    opt_state = tx.init(eqx.filter(model, eqx.is_inexact_array))
    arrays, static = eqx.partition(model, eqx.is_array)

    @jax.jit
    def step(carry, x, y):
        arrays, state, opt_state = carry
        model, state, opt_state, loss = _equinox_train_step(
            eqx, tx, eqx.combine(arrays, static), state, opt_state, x, y)
        return (eqx.filter(model, eqx.is_array), state, opt_state), loss

    return _stepper(step, (arrays, state, opt_state), *batch())


# ----------------------------------------------------------------------------- suite

COUNTERPARTS = {
    "plait nnx.jit": {"flax": "flax nnx.jit", "equinox": "equinox filter_jit"},
    "plait nnx split/merge": {"flax": "flax nnx split/merge", "equinox": "equinox partition/combine"},
    "plait linen": {"flax": "flax linen", "same layout": LINEN_LAYOUT_FLOOR},
}


def variants(depth: int, opt: str, peers: Any) -> dict[str, Callable[[], Step]]:
    """Builders (not yet built) of every variant, floor first."""
    from plait import linen as plait_linen
    from plait import nnx as plait_nnx

    out: dict[str, Callable[[], Step]] = {
        FLOOR: lambda: floor_variant(depth, opt),
        "plait nnx.jit": lambda: nnx_jit_variant(plait_nnx, depth, opt),
        "plait nnx split/merge": lambda: nnx_split_merge_variant(plait_nnx, depth, opt),
        LINEN_LAYOUT_FLOOR: lambda: linen_layout_floor_variant(depth, opt),
        "plait linen": lambda: linen_variant(plait_linen, depth, opt),
    }
    if peers.flax_nnx is not None:
        out["flax nnx.jit"] = lambda: nnx_jit_variant(peers.flax_nnx, depth, opt)
        out["flax nnx split/merge"] = lambda: nnx_split_merge_variant(peers.flax_nnx, depth, opt)
        out["flax linen"] = lambda: linen_variant(peers.flax_linen, depth, opt)
    if peers.equinox is not None:
        out["equinox filter_jit"] = lambda: equinox_filter_jit_variant(peers.equinox, depth, opt)
        out["equinox partition/combine"] = lambda: equinox_partition_variant(peers.equinox, depth, opt)
    return out


def run(ctx: Context) -> None:
    for depth in ctx.depths:
        for opt in ctx.optimizers:
            fns = {name: build() for name, build in select(ctx, variants(depth, opt, ctx.peers)).items()}
            for _ in range(ctx.warmup):  # compile everything before calibrating
                jax.block_until_ready([fn() for fn in fns.values()])
            inner = calibrate_inner(fns[FLOOR], jax.block_until_ready, ctx.target_s)
            advance = ctx.progress(f"mlp depth={depth} {opt}", ctx.rounds)
            res = interleaved(fns, rounds=ctx.rounds, inner=inner, warmup=1, floor=FLOOR,
                              block=jax.block_until_ready, progress=advance)
            add_rows(ctx, "mlp", f"depth={depth} {opt}", {n: m.seconds for n, m in res.items()},
                     unit="ms", counterparts=COUNTERPARTS,
                     floor_ratios={n: m.floor_ratios for n, m in res.items()},
                     extras={n: {"inner": inner} for n in res})
