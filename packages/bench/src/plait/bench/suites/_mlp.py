"""(a) Train-step cost of a deep narrow MLP: Python overhead, not FLOPs, dominates.

Each block is Linear + BatchNorm + a step-counter Variable; width 32, batch 16. The floor
is the same math written by hand as one ``jax.jit`` over a dict of arrays. The nnx and
linen variants are written once against the Flax API and instantiated with plait's
modules (and Flax's, when installed, as a peer).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

WIDTH, BATCH, EPS, MOMENTUM = 32, 16, 1e-5, 0.99


def make_optimizer(name: str) -> optax.GradientTransformation:
    return {"sgd": optax.sgd(1e-3), "adam": optax.adam(1e-3)}[name]


def batch(seed: int = 0):
    kx, ky = jax.random.split(jax.random.key(seed))
    return jax.random.normal(kx, (BATCH, WIDTH)), jax.random.normal(ky, (BATCH, WIDTH))


# ----------------------------------------------------------------------------- floor


def floor_variant(depth: int, opt: str):
    """Hand-written JAX: params / batch_stats / counters as dicts of arrays."""
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
            x = x @ p["kernel"] + p["bias"]
            mean, var = x.mean(0), x.var(0)
            new_stats[f"block{i}"] = {
                "mean": MOMENTUM * s["mean"] + (1 - MOMENTUM) * mean,
                "var": MOMENTUM * s["var"] + (1 - MOMENTUM) * var,
            }
            x = (x - mean) * jax.lax.rsqrt(var + EPS) * p["scale"] + p["shift"]
            x = jax.nn.relu(x)
        return x, new_stats

    @jax.jit
    def step(state, x, y):
        def loss_fn(params):
            out, new_stats = forward(params, state["stats"], x)
            return jnp.mean((out - y) ** 2), new_stats

        (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        updates, opt_state = tx.update(grads, state["opt"], state["params"])
        return {
            "params": optax.apply_updates(state["params"], updates),
            "stats": jax.lax.stop_gradient(new_stats),
            "counts": jax.tree.map(lambda c: c + 1, state["counts"]),
            "opt": opt_state,
        }, loss

    x, y = batch()
    box = [state]

    def call():
        box[0], loss = step(box[0], x, y)
        return loss

    return call


# ----------------------------------------------------------------------------- nnx API


def nnx_model(nnx, depth: int):
    class Count(nnx.Variable):
        pass

    class Block(nnx.Module):
        def __init__(self, rngs):
            self.linear = nnx.Linear(WIDTH, WIDTH, rngs=rngs)
            self.bn = nnx.BatchNorm(WIDTH, momentum=MOMENTUM, epsilon=EPS, rngs=rngs)
            self.count = Count(jnp.zeros((), jnp.int32))

        def __call__(self, x):
            self.count.value += 1
            return jax.nn.relu(self.bn(self.linear(x)))

    class MLP(nnx.Module):
        def __init__(self, rngs):
            self.blocks = nnx.List([Block(rngs) for _ in range(depth)])

        def __call__(self, x):
            for block in self.blocks:
                x = block(x)
            return x

    return MLP(nnx.Rngs(0))


def nnx_jit_variant(nnx, depth: int, opt: str):
    """The idiomatic stateful step: ``nnx.jit`` over the model and optimizer objects."""
    model = nnx_model(nnx, depth)
    optimizer = nnx.Optimizer(model, make_optimizer(opt), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, x, y):
        def loss_fn(model):
            return jnp.mean((model(x) - y) ** 2)

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    x, y = batch()
    return lambda: step(model, optimizer, x, y)


def nnx_split_merge_variant(nnx, depth: int, opt: str):
    """The functional fast path: split once, ``jax.jit`` a function that merges inside."""
    model = nnx_model(nnx, depth)
    optimizer = nnx.Optimizer(model, make_optimizer(opt), wrt=nnx.Param)
    graphdef, state = nnx.split((model, optimizer))

    @jax.jit
    def step(state, x, y):
        model, optimizer = nnx.merge(graphdef, state)

        def loss_fn(model):
            return jnp.mean((model(x) - y) ** 2)

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return nnx.state((model, optimizer)), loss

    x, y = batch()
    box = [state]

    def call():
        box[0], loss = step(box[0], x, y)
        return loss

    return call


# ----------------------------------------------------------------------------- linen API


def linen_variant(nn, depth: int, opt: str):
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

    module = MLP()
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

    box = [state]

    def call():
        box[0], loss = step(box[0], x, y)
        return loss

    return call


def variants(depth: int, opt: str, peers: dict) -> dict:
    from plait import linen as plait_linen
    from plait import nnx as plait_nnx

    out = {
        "floor (jax.jit, dict)": lambda: floor_variant(depth, opt),
        "plait nnx.jit": lambda: nnx_jit_variant(plait_nnx, depth, opt),
        "plait nnx split/merge": lambda: nnx_split_merge_variant(plait_nnx, depth, opt),
        "plait linen": lambda: linen_variant(plait_linen, depth, opt),
    }
    if "flax" in peers:
        flax_nnx, flax_linen = peers["flax"]
        out["flax nnx.jit"] = lambda: nnx_jit_variant(flax_nnx, depth, opt)
        out["flax nnx split/merge"] = lambda: nnx_split_merge_variant(flax_nnx, depth, opt)
        out["flax linen"] = lambda: linen_variant(flax_linen, depth, opt)
    return out
