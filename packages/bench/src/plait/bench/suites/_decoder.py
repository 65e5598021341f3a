"""(c) Trace + compile time of a 4-layer decoder's forward+backward, and (d) a CNN step.

Compile time is dominated by XLA, so every variant should land near the floor; a large
ratio means the library adds Python work at trace time or emits a bigger program.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import optax

LAYERS, D_MODEL, HEADS, MLP, VOCAB, SEQ, BATCH = 4, 256, 4, 1024, 1024, 128, 8


def _attention(q, k, v):
    b, t, _ = q.shape
    hd = D_MODEL // HEADS
    q, k, v = (a.reshape(b, t, HEADS, hd) for a in (q, k, v))
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(hd)
    mask = jnp.tril(jnp.ones((t, t), bool))
    logits = jnp.where(mask, logits, -1e9)
    out = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(logits, -1), v)
    return out.reshape(b, t, D_MODEL)


def _layer_norm(x, scale, bias):
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + 1e-6) * scale + bias


def floor_params(key):
    ks = iter(jax.random.split(key, 6 * LAYERS + 1))
    dense = lambda i, o: jax.random.normal(next(ks), (i, o)) * (1.0 / i) ** 0.5
    layers = [
        {"ln1_s": jnp.ones(D_MODEL), "ln1_b": jnp.zeros(D_MODEL), "q": dense(D_MODEL, D_MODEL),
         "k": dense(D_MODEL, D_MODEL), "v": dense(D_MODEL, D_MODEL), "o": dense(D_MODEL, D_MODEL),
         "ln2_s": jnp.ones(D_MODEL), "ln2_b": jnp.zeros(D_MODEL), "up": dense(D_MODEL, MLP),
         "down": dense(MLP, D_MODEL)}
        for _ in range(LAYERS)
    ]
    return {"embed": jax.random.normal(next(ks), (VOCAB, D_MODEL)), "layers": layers}


def floor_loss(params, tokens):
    x = params["embed"][tokens]
    for p in params["layers"]:
        h = _layer_norm(x, p["ln1_s"], p["ln1_b"])
        x = x + _attention(h @ p["q"], h @ p["k"], h @ p["v"]) @ p["o"]
        h = _layer_norm(x, p["ln2_s"], p["ln2_b"])
        x = x + jax.nn.gelu(h @ p["up"]) @ p["down"]
    logits = x @ params["embed"].T
    return optax.softmax_cross_entropy_with_integer_labels(logits[:, :-1], tokens[:, 1:]).mean()


def nnx_decoder(nnx):
    class Layer(nnx.Module):
        def __init__(self, rngs):
            self.ln1 = nnx.LayerNorm(D_MODEL, epsilon=1e-6, rngs=rngs)
            self.attn = nnx.MultiHeadAttention(HEADS, D_MODEL, use_bias=False, decode=False,
                                               rngs=rngs)
            self.ln2 = nnx.LayerNorm(D_MODEL, epsilon=1e-6, rngs=rngs)
            self.up = nnx.Linear(D_MODEL, MLP, use_bias=False, rngs=rngs)
            self.down = nnx.Linear(MLP, D_MODEL, use_bias=False, rngs=rngs)

        def __call__(self, x, mask):
            x = x + self.attn(self.ln1(x), mask=mask)
            return x + self.down(jax.nn.gelu(self.up(self.ln2(x))))

    class Decoder(nnx.Module):
        def __init__(self, rngs):
            self.embed = nnx.Embed(VOCAB, D_MODEL, rngs=rngs)
            self.layers = nnx.List([Layer(rngs) for _ in range(LAYERS)])

        def __call__(self, tokens):
            x = self.embed(tokens)
            mask = nnx.make_causal_mask(tokens)
            for layer in self.layers:
                x = layer(x, mask)
            return self.embed.attend(x)

    return Decoder(nnx.Rngs(0))


def linen_decoder(nn):
    class Layer(nn.Module):
        @nn.compact
        def __call__(self, x, mask):
            h = nn.LayerNorm(epsilon=1e-6)(x)
            x = x + nn.MultiHeadDotProductAttention(HEADS, use_bias=False)(h, h, mask=mask)
            h = nn.LayerNorm(epsilon=1e-6)(x)
            return x + nn.Dense(D_MODEL, use_bias=False)(jax.nn.gelu(nn.Dense(MLP, use_bias=False)(h)))

    class Decoder(nn.Module):
        @nn.compact
        def __call__(self, tokens):
            embed = nn.Embed(VOCAB, D_MODEL)
            x = embed(tokens)
            mask = nn.make_causal_mask(tokens)
            for _ in range(LAYERS):
                x = Layer()(x, mask)
            return embed.attend(x)

    return Decoder()


def tokens():
    return jax.random.randint(jax.random.key(1), (BATCH, SEQ), 0, VOCAB)


def compile_seconds(fn, *args) -> tuple[float, float]:
    """(trace+lower seconds, XLA compile seconds) for ``jax.jit(fn)`` on ``args``."""
    t0 = time.perf_counter()
    lowered = jax.jit(fn).lower(*args)
    t1 = time.perf_counter()
    lowered.compile()
    return t1 - t0, time.perf_counter() - t1


def compile_variants(nnx, nn, prefix: str) -> dict:
    toks = tokens()

    def floor():
        params = floor_params(jax.random.key(0))
        return compile_seconds(jax.grad(floor_loss), params, toks)

    def nnx_variant():
        model = nnx_decoder(nnx)
        graphdef, state = nnx.split(model)

        def loss(state, toks):
            m = nnx.merge(graphdef, state)
            logits = m(toks)
            return optax.softmax_cross_entropy_with_integer_labels(
                logits[:, :-1], toks[:, 1:]).mean()

        return compile_seconds(jax.grad(loss), state, toks)

    def linen_variant():
        module = linen_decoder(nn)
        params = module.init(jax.random.key(0), toks)["params"]

        def loss(params, toks):
            logits = module.apply({"params": params}, toks)
            return optax.softmax_cross_entropy_with_integer_labels(
                logits[:, :-1], toks[:, 1:]).mean()

        return compile_seconds(jax.grad(loss), params, toks)

    out = {f"{prefix} nnx": nnx_variant, f"{prefix} linen": linen_variant}
    if prefix == "plait":
        out = {"floor (jax)": floor, **out}
    return out


def cnn_step_variants(nnx, prefix: str) -> dict:
    """(d) A compute-bound CNN train step (28x28x1, batch 128): ratios should be ~1."""
    x = jax.random.normal(jax.random.key(0), (128, 28, 28, 1))
    y = jax.random.randint(jax.random.key(1), (128,), 0, 10)
    tx = optax.sgd(0.01)

    def floor():
        k = jax.random.split(jax.random.key(0), 4)
        params = {"c1": jax.random.normal(k[0], (3, 3, 1, 32)) * 0.3, "b1": jnp.zeros(32),
                  "c2": jax.random.normal(k[1], (3, 3, 32, 64)) * 0.06, "b2": jnp.zeros(64),
                  "d1": jax.random.normal(k[2], (7 * 7 * 64, 256)) * 0.02, "e1": jnp.zeros(256),
                  "d2": jax.random.normal(k[3], (256, 10)) * 0.06, "e2": jnp.zeros(10)}

        def conv(x, w, b):
            y = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"))
            return y + b

        def pool(x):
            return jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 2, 2, 1), (1, 2, 2, 1), "VALID") / 4

        def loss(p):
            h = pool(jax.nn.relu(conv(x, p["c1"], p["b1"])))
            h = pool(jax.nn.relu(conv(h, p["c2"], p["b2"])))
            h = jax.nn.relu(h.reshape(128, -1) @ p["d1"] + p["e1"])
            logits = h @ p["d2"] + p["e2"]
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        @jax.jit
        def step(p, o):
            l, g = jax.value_and_grad(loss)(p)
            u, o = tx.update(g, o, p)
            return optax.apply_updates(p, u), o, l

        box = [params, tx.init(params)]

        def call():
            box[0], box[1], l = step(*box)
            return l

        return call

    def nnx_variant():
        class CNN(nnx.Module):
            def __init__(self, rngs):
                self.c1 = nnx.Conv(1, 32, (3, 3), rngs=rngs)
                self.c2 = nnx.Conv(32, 64, (3, 3), rngs=rngs)
                self.d1 = nnx.Linear(7 * 7 * 64, 256, rngs=rngs)
                self.d2 = nnx.Linear(256, 10, rngs=rngs)

            def __call__(self, x):
                x = nnx.avg_pool(jax.nn.relu(self.c1(x)), (2, 2), (2, 2))
                x = nnx.avg_pool(jax.nn.relu(self.c2(x)), (2, 2), (2, 2))
                return self.d2(jax.nn.relu(self.d1(x.reshape(x.shape[0], -1))))

        model = CNN(nnx.Rngs(0))
        optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

        @nnx.jit
        def step(model, optimizer):
            def loss(model):
                return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()

            l, g = nnx.value_and_grad(loss)(model)
            optimizer.update(model, g)
            return l

        return lambda: step(model, optimizer)

    out = {f"{prefix} nnx.jit": nnx_variant}
    if prefix == "plait":
        out = {"floor (jax.jit)": floor, **out}
    return out
