"""(c) Init, trace and compile time of a 4-layer decoder's forward+backward pass.

The decoder: token embedding (tied output projection), then per layer pre-LayerNorm
causal multi-head attention and a GELU MLP, both residual; d_model 256, 4 heads, MLP
1024, vocab 1024, sequence 128, batch 8. One fresh model per measurement:

- ``init``: building the parameters (a constructor, ``module.init``, or random arrays);
- ``trace``: ``jax.jit(jax.grad(loss)).trace(...)`` plus ``.lower()`` (Python work: the
  library's modules run once on tracers, then the program is lowered to StableHLO);
- ``compile``: XLA compiling the lowered program.

Compile time is dominated by XLA, so every variant should land near the floor; a large
ratio means the library does more Python work at trace time or emits a bigger program.
The floor writes the same math by hand (same projections, scaling, mask, one-pass
LayerNorm variance, tanh GELU), so it is the same program up to op order.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import jax
import jax.numpy as jnp
import optax

from .._timing import interleaved_once
from ._common import Context, add_rows, select

FLOOR = "floor (jax)"


@dataclasses.dataclass(frozen=True)
class Config:
    layers: int = 4
    d_model: int = 256
    heads: int = 4
    mlp: int = 1024
    vocab: int = 1024
    seq: int = 128
    batch: int = 8

    @property
    def head_dim(self) -> int:
        return self.d_model // self.heads


FULL = Config()
TINY = Config(layers=1, d_model=16, heads=2, mlp=32, vocab=64, seq=8, batch=2)


def tokens(cfg: Config) -> jax.Array:
    return jax.random.randint(jax.random.key(1), (cfg.batch, cfg.seq), 0, cfg.vocab)


def next_token_loss(logits: jax.Array, toks: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits[:, :-1], toks[:, 1:]).mean()


# ----------------------------------------------------------------------------- floor


def _layer_norm(x, scale, bias, eps=1e-6):
    mean = x.mean(-1, keepdims=True)
    var = jnp.maximum(0.0, jnp.square(x).mean(-1, keepdims=True) - jnp.square(mean))
    return (x - mean) * (jax.lax.rsqrt(var + eps) * scale) + bias


def _attention(cfg: Config, p: dict, h: jax.Array, mask: jax.Array) -> jax.Array:
    q, k, v = (jnp.einsum("btd,dhk->bthk", h, p[n]) for n in ("q", "k", "v"))
    q = q / jnp.sqrt(cfg.head_dim).astype(q.dtype)
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k)
    logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
    weights = jax.nn.softmax(logits)
    out = jnp.einsum("bhqk,bkhd->bqhd", weights, v)
    return jnp.einsum("bthk,hkd->btd", out, p["o"])


def floor_params(cfg: Config, key: jax.Array) -> dict:
    keys = iter(jax.random.split(key, 6 * cfg.layers + 1))
    d, h, hd = cfg.d_model, cfg.heads, cfg.head_dim

    def dense(*shape, fan_in):
        return jax.random.normal(next(keys), shape) * (1.0 / fan_in) ** 0.5

    layers = [
        {"ln1_s": jnp.ones(d), "ln1_b": jnp.zeros(d), "q": dense(d, h, hd, fan_in=d),
         "k": dense(d, h, hd, fan_in=d), "v": dense(d, h, hd, fan_in=d),
         "o": dense(h, hd, d, fan_in=d), "ln2_s": jnp.ones(d), "ln2_b": jnp.zeros(d),
         "up": dense(d, cfg.mlp, fan_in=d), "down": dense(cfg.mlp, d, fan_in=cfg.mlp)}
        for _ in range(cfg.layers)
    ]
    return {"embed": jax.random.normal(next(keys), (cfg.vocab, d)), "layers": layers}


def floor_loss(cfg: Config) -> Callable[[dict, jax.Array], jax.Array]:
    def loss(params, toks):
        x = jnp.take(params["embed"], toks, axis=0)
        positions = jnp.arange(toks.shape[-1])
        mask = (positions[:, None] >= positions[None, :])[None, None]
        for p in params["layers"]:
            x = x + _attention(cfg, p, _layer_norm(x, p["ln1_s"], p["ln1_b"]), mask)
            h = _layer_norm(x, p["ln2_s"], p["ln2_b"])
            x = x + jax.nn.gelu(h @ p["up"]) @ p["down"]
        return next_token_loss(x @ params["embed"].T, toks)

    return loss


# ----------------------------------------------------------------------------- nnx / linen API


def nnx_decoder(nnx: ModuleType, cfg: Config) -> Any:
    class Layer(nnx.Module):
        def __init__(self, rngs):
            self.ln1 = nnx.LayerNorm(cfg.d_model, epsilon=1e-6, rngs=rngs)
            self.attn = nnx.MultiHeadAttention(cfg.heads, cfg.d_model, use_bias=False,
                                               decode=False, rngs=rngs)
            self.ln2 = nnx.LayerNorm(cfg.d_model, epsilon=1e-6, rngs=rngs)
            self.up = nnx.Linear(cfg.d_model, cfg.mlp, use_bias=False, rngs=rngs)
            self.down = nnx.Linear(cfg.mlp, cfg.d_model, use_bias=False, rngs=rngs)

        def __call__(self, x, mask):
            x = x + self.attn(self.ln1(x), mask=mask)
            return x + self.down(jax.nn.gelu(self.up(self.ln2(x))))

    class Decoder(nnx.Module):
        def __init__(self, rngs):
            self.embed = nnx.Embed(cfg.vocab, cfg.d_model, rngs=rngs)
            self.layers = nnx.List([Layer(rngs) for _ in range(cfg.layers)])

        def __call__(self, toks):
            x = self.embed(toks)
            mask = nnx.make_causal_mask(toks)
            for layer in self.layers:
                x = layer(x, mask)
            return self.embed.attend(x)

    return Decoder(nnx.Rngs(0))


def linen_decoder(nn: ModuleType, cfg: Config) -> Any:
    class Layer(nn.Module):
        @nn.compact
        def __call__(self, x, mask):
            h = nn.LayerNorm(epsilon=1e-6)(x)
            x = x + nn.MultiHeadDotProductAttention(cfg.heads, use_bias=False)(h, h, mask=mask)
            h = nn.LayerNorm(epsilon=1e-6)(x)
            up = nn.Dense(cfg.mlp, use_bias=False)(h)
            return x + nn.Dense(cfg.d_model, use_bias=False)(jax.nn.gelu(up))

    class Decoder(nn.Module):
        @nn.compact
        def __call__(self, toks):
            embed = nn.Embed(cfg.vocab, cfg.d_model)
            x = embed(toks)
            mask = nn.make_causal_mask(toks)
            for _ in range(cfg.layers):
                x = Layer()(x, mask)
            return embed.attend(x)

    return Decoder()


# ----------------------------------------------------------------------------- equinox


def equinox_decoder(eqx: ModuleType, cfg: Config) -> Any:
    """Equinox's modules act on one example: ``(seq,)`` tokens in, ``(seq, vocab)`` out."""

    class Layer(eqx.Module):
        ln1: Any
        attn: Any
        ln2: Any
        up: Any
        down: Any

        def __init__(self, key):
            k1, k2, k3 = jax.random.split(key, 3)
            self.ln1 = eqx.nn.LayerNorm(cfg.d_model, eps=1e-6)
            self.attn = eqx.nn.MultiheadAttention(
                cfg.heads, cfg.d_model, use_query_bias=False, use_key_bias=False,
                use_value_bias=False, use_output_bias=False, key=k1)
            self.ln2 = eqx.nn.LayerNorm(cfg.d_model, eps=1e-6)
            self.up = eqx.nn.Linear(cfg.d_model, cfg.mlp, use_bias=False, key=k2)
            self.down = eqx.nn.Linear(cfg.mlp, cfg.d_model, use_bias=False, key=k3)

        def __call__(self, x, mask):
            h = jax.vmap(self.ln1)(x)
            x = x + self.attn(h, h, h, mask=mask)
            h = jax.vmap(self.ln2)(x)
            return x + jax.vmap(self.down)(jax.nn.gelu(jax.vmap(self.up)(h)))

    class Decoder(eqx.Module):
        embed: Any
        layers: list

        def __init__(self, key):
            k0, *ks = jax.random.split(key, cfg.layers + 1)
            self.embed = eqx.nn.Embedding(cfg.vocab, cfg.d_model, key=k0)
            self.layers = [Layer(k) for k in ks]

        def __call__(self, toks):
            x = jax.vmap(self.embed)(toks)
            mask = jnp.tril(jnp.ones((toks.shape[0], toks.shape[0]), bool))
            for layer in self.layers:
                x = layer(x, mask)
            return x @ self.embed.weight.T

    return Decoder(jax.random.key(0))


# ----------------------------------------------------------------------------- measurement


def compile_seconds(fn: Callable[..., Any], *args: Any) -> dict[str, float]:
    """Trace+lower and XLA-compile seconds of ``jax.jit(fn)`` on ``args``."""
    t0 = time.perf_counter()
    lowered = jax.jit(fn).trace(*args).lower()
    t1 = time.perf_counter()
    lowered.compile()
    return {"trace": t1 - t0, "compile": time.perf_counter() - t1}


def _timed_init(build: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = build()
    jax.block_until_ready(jax.tree.leaves(out))
    return out, time.perf_counter() - t0


def floor_builder(cfg: Config) -> Callable[[], tuple[Callable, Any]]:
    return lambda: (jax.grad(floor_loss(cfg)), floor_params(cfg, jax.random.key(0)))


def nnx_builder(nnx: ModuleType, cfg: Config) -> Callable[[], tuple[Callable, Any]]:
    def build():
        graphdef, state = nnx.split(nnx_decoder(nnx, cfg))

        def loss(state, toks):
            return next_token_loss(nnx.merge(graphdef, state)(toks), toks)

        return jax.grad(loss), state

    return build


def linen_builder(nn: ModuleType, cfg: Config) -> Callable[[], tuple[Callable, Any]]:
    def build():
        module = linen_decoder(nn, cfg)
        params = module.init(jax.random.key(0), tokens(cfg))["params"]

        def loss(params, toks):
            return next_token_loss(module.apply({"params": params}, toks), toks)

        return jax.grad(loss), params

    return build


def equinox_builder(eqx: ModuleType, cfg: Config) -> Callable[[], tuple[Callable, Any]]:
    def build():
        arrays, static = eqx.partition(equinox_decoder(eqx, cfg), eqx.is_array)

        def loss(arrays, toks):
            return next_token_loss(jax.vmap(eqx.combine(arrays, static))(toks), toks)

        return jax.grad(loss), arrays

    return build


def builders(cfg: Config, peers: Any) -> dict[str, Callable[[], tuple[Callable, Any]]]:
    """name -> a builder returning ``(gradient function, its parameters)``, floor first."""
    from plait import linen, nnx

    out = {FLOOR: floor_builder(cfg), "plait nnx": nnx_builder(nnx, cfg),
           "plait linen": linen_builder(linen, cfg)}
    if peers.flax_nnx is not None:
        out["flax nnx"] = nnx_builder(peers.flax_nnx, cfg)
        out["flax linen"] = linen_builder(peers.flax_linen, cfg)
    if peers.equinox is not None:
        out["equinox"] = equinox_builder(peers.equinox, cfg)
    return out


def measure_once(build: Callable[[], tuple[Callable, Any]], cfg: Config) -> dict[str, float]:
    """``init``, ``trace`` and ``compile`` seconds for one fresh model."""
    (grad_fn, params), init_s = _timed_init(build)
    return {"init": init_s, **compile_seconds(grad_fn, params, tokens(cfg))}


COUNTERPARTS = {"plait nnx": {"flax": "flax nnx", "equinox": "equinox"},
                "plait linen": {"flax": "flax linen"}}


def run(ctx: Context) -> None:
    cfg = TINY if ctx.tiny else FULL
    fns = {name: (lambda b=b: measure_once(b, cfg))
           for name, b in select(ctx, builders(cfg, ctx.peers)).items()}
    rounds = max(1, ctx.rounds // 3)
    advance = ctx.progress("decoder init/trace/compile", rounds)
    res = interleaved_once(fns, rounds=rounds, warmup=0 if ctx.tiny else 1, progress=advance)
    parts = {name: {k: [r[k] for r in rs] for k in ("init", "trace", "compile")}
             for name, rs in res.items()}
    medians = {name: {f"{k}_s": sorted(v)[len(v) // 2] for k, v in p.items()}
               for name, p in parts.items()}
    size = "tiny decoder" if ctx.tiny else "decoder"
    add_rows(ctx, "compile", f"{size} fwd+bwd: trace+compile",
             {n: [t + c for t, c in zip(p["trace"], p["compile"], strict=True)] for n, p in parts.items()},
             unit="s", floor=FLOOR, counterparts=COUNTERPARTS, extras=medians)
    add_rows(ctx, "compile", f"{size}: init + first trace+compile",
             {n: [i + t + c for i, t, c in zip(p["init"], p["trace"], p["compile"], strict=True)]
              for n, p in parts.items()},
             unit="s", floor=FLOOR, counterparts=COUNTERPARTS, extras=medians)
