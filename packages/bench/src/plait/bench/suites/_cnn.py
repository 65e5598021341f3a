"""(d) A compute-bound CNN train step (28x28x1 images, batch 128): ratios should be ~1.

Two 3x3 convolutions (32, 64 channels) with ReLU and 2x2 average pooling, a 256-unit
dense layer and a 10-way softmax cross-entropy, optax SGD. XLA's convolutions dominate,
so this checks that no framework adds measurable cost (or a different program) once the
work per step is real.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import jax
import jax.numpy as jnp
import optax

from .._timing import interleaved
from ._common import FLOOR, Context, add_rows, select

FULL_BATCH, TINY_BATCH, SIDE, CLASSES = 128, 8, 28, 10


def data(batch: int, channels_first: bool = False) -> tuple[jax.Array, jax.Array]:
    x = jax.random.normal(jax.random.key(0), (batch, SIDE, SIDE, 1))
    y = jax.random.randint(jax.random.key(1), (batch,), 0, CLASSES)
    return (jnp.moveaxis(x, -1, 1) if channels_first else x), y


def _xent(logits: jax.Array, y: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def _stepper(step: Callable[..., tuple[Any, jax.Array]], state: Any) -> Callable[[], jax.Array]:
    box = [state]

    def call() -> jax.Array:
        box[0], loss = step(box[0])
        return loss

    return call


def floor_variant(batch: int) -> Callable[[], jax.Array]:
    x, y = data(batch)
    tx = optax.sgd(0.01)
    k = jax.random.split(jax.random.key(0), 4)
    flat = (SIDE // 4) ** 2 * 64
    params = {"c1": jax.random.normal(k[0], (3, 3, 1, 32)) * 0.3, "b1": jnp.zeros(32),
              "c2": jax.random.normal(k[1], (3, 3, 32, 64)) * 0.06, "b2": jnp.zeros(64),
              "d1": jax.random.normal(k[2], (flat, 256)) * 0.02, "e1": jnp.zeros(256),
              "d2": jax.random.normal(k[3], (256, CLASSES)) * 0.06, "e2": jnp.zeros(CLASSES)}

    def conv(x, w, b):
        return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC")) + b

    def pool(x):
        return jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 2, 2, 1), (1, 2, 2, 1), "VALID") / 4

    def loss(p):
        h = pool(jax.nn.relu(conv(x, p["c1"], p["b1"])))
        h = pool(jax.nn.relu(conv(h, p["c2"], p["b2"])))
        h = jax.nn.relu(h.reshape(batch, -1) @ p["d1"] + p["e1"])
        return _xent(h @ p["d2"] + p["e2"], y)

    @jax.jit
    def step(state):
        p, o = state
        value, g = jax.value_and_grad(loss)(p)
        u, o = tx.update(g, o, p)
        return (optax.apply_updates(p, u), o), value

    return _stepper(step, (params, tx.init(params)))


def nnx_variant(nnx: ModuleType, batch: int) -> Callable[[], jax.Array]:
    x, y = data(batch)

    class CNN(nnx.Module):
        def __init__(self, rngs):
            self.c1 = nnx.Conv(1, 32, (3, 3), rngs=rngs)
            self.c2 = nnx.Conv(32, 64, (3, 3), rngs=rngs)
            self.d1 = nnx.Linear((SIDE // 4) ** 2 * 64, 256, rngs=rngs)
            self.d2 = nnx.Linear(256, CLASSES, rngs=rngs)

        def __call__(self, x):
            x = nnx.avg_pool(jax.nn.relu(self.c1(x)), (2, 2), (2, 2))
            x = nnx.avg_pool(jax.nn.relu(self.c2(x)), (2, 2), (2, 2))
            return self.d2(jax.nn.relu(self.d1(x.reshape(x.shape[0], -1))))

    model = CNN(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.sgd(0.01), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer):
        value, g = nnx.value_and_grad(lambda m: _xent(m(x), y))(model)
        optimizer.update(model, g)
        return value

    return lambda: step(model, optimizer)


def linen_variant(nn: ModuleType, batch: int) -> Callable[[], jax.Array]:
    x, y = data(batch)

    class CNN(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.avg_pool(jax.nn.relu(nn.Conv(32, (3, 3))(x)), (2, 2), (2, 2))
            x = nn.avg_pool(jax.nn.relu(nn.Conv(64, (3, 3))(x)), (2, 2), (2, 2))
            x = jax.nn.relu(nn.Dense(256)(x.reshape(x.shape[0], -1)))
            return nn.Dense(CLASSES)(x)

    module = CNN()
    params = module.init(jax.random.key(0), x)["params"]
    tx = optax.sgd(0.01)

    @jax.jit
    def step(state):
        p, o = state
        value, g = jax.value_and_grad(lambda p: _xent(module.apply({"params": p}, x), y))(p)
        u, o = tx.update(g, o, p)
        return (optax.apply_updates(p, u), o), value

    return _stepper(step, (params, tx.init(params)))


def equinox_variant(eqx: ModuleType, batch: int) -> Callable[[], jax.Array]:
    """Equinox convolutions are channels-first on one example; the batch is a vmap."""
    x, y = data(batch, channels_first=True)

    class CNN(eqx.Module):
        c1: Any
        c2: Any
        d1: Any
        d2: Any
        pool: Any

        def __init__(self, key):
            k = jax.random.split(key, 4)
            self.c1 = eqx.nn.Conv2d(1, 32, 3, padding="SAME", key=k[0])
            self.c2 = eqx.nn.Conv2d(32, 64, 3, padding="SAME", key=k[1])
            self.d1 = eqx.nn.Linear((SIDE // 4) ** 2 * 64, 256, key=k[2])
            self.d2 = eqx.nn.Linear(256, CLASSES, key=k[3])
            self.pool = eqx.nn.AvgPool2d(2, 2)

        def __call__(self, x):
            x = self.pool(jax.nn.relu(self.c1(x)))
            x = self.pool(jax.nn.relu(self.c2(x)))
            return self.d2(jax.nn.relu(self.d1(x.reshape(-1))))

    model = CNN(jax.random.key(0))
    tx = optax.sgd(0.01)

    @eqx.filter_jit
    def step(state):
        model, o = state
        value, g = eqx.filter_value_and_grad(lambda m: _xent(jax.vmap(m)(x), y))(model)
        u, o = tx.update(g, o, eqx.filter(model, eqx.is_inexact_array))
        return (eqx.apply_updates(model, u), o), value

    return _stepper(step, (model, tx.init(eqx.filter(model, eqx.is_inexact_array))))


COUNTERPARTS = {"plait nnx.jit": {"flax": "flax nnx.jit", "equinox": "equinox filter_jit"},
                "plait linen": {"flax": "flax linen"}}


def run(ctx: Context) -> None:
    from plait import linen, nnx

    batch = TINY_BATCH if ctx.tiny else FULL_BATCH
    builders: dict[str, Callable[[], Callable[[], jax.Array]]] = {
        FLOOR: lambda: floor_variant(batch),
        "plait nnx.jit": lambda: nnx_variant(nnx, batch),
        "plait linen": lambda: linen_variant(linen, batch),
    }
    if ctx.peers.flax_nnx is not None:
        builders["flax nnx.jit"] = lambda: nnx_variant(ctx.peers.flax_nnx, batch)
        builders["flax linen"] = lambda: linen_variant(ctx.peers.flax_linen, batch)
    if ctx.peers.equinox is not None:
        builders["equinox filter_jit"] = lambda: equinox_variant(ctx.peers.equinox, batch)
    fns = {n: b() for n, b in select(ctx, builders).items()}
    rounds = max(1, ctx.rounds // 2)
    advance = ctx.progress(f"cnn step batch {batch}", rounds)
    res = interleaved(fns, rounds=rounds, inner=1 if not ctx.tiny else 3, floor=FLOOR,
                      warmup=min(ctx.warmup, 2), block=jax.block_until_ready, progress=advance)
    add_rows(ctx, "cnn", f"28x28x1 batch {batch}", {n: m.seconds for n, m in res.items()},
             unit="ms", counterparts=COUNTERPARTS,
             floor_ratios={n: m.floor_ratios for n, m in res.items()})
