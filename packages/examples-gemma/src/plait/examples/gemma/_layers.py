"""Gemma's small layers: RMSNorm with ``(1 + scale)``, tied embedder, gated GeLU MLP, RoPE.

Every parameter carries logical axis names (``nnx.with_partitioning``); ``_sharding.py``
maps them to mesh axes. Kernels are stored input-dimension first (``(embed, ...)`` for
projections out of the residual stream), so a projection is one ``einsum`` on them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from plait import nnx

EPSILON = 1e-6


def _param(rngs: nnx.Rngs | None, init, shape: tuple[int, ...], dtype, names: tuple[str | None, ...]) -> nnx.Param:
    key = rngs.params() if rngs is not None else jax.random.key(0)
    return nnx.Param(nnx.with_partitioning(init, names)(key, shape, dtype))


def fan_in_normal(fan_in: int):
    """Normal initializer with standard deviation ``fan_in ** -0.5`` (unit-variance outputs)."""
    return jax.nn.initializers.normal(stddev=fan_in**-0.5)


class RMSNorm(nnx.Module):
    """Root-mean-square norm with a zero-initialised scale used as ``x * (1 + scale)``.

    The statistics are computed in float32 whatever the input dtype.

    Example:
      >>> import jax.numpy as jnp
      >>> norm = RMSNorm(4, names=("embed",))
      >>> norm(jnp.array([[3.0, -3.0, 3.0, -3.0]])).round(4).tolist()
      [[1.0, -1.0, 1.0, -1.0]]
    """

    def __init__(self, dim: int, *, names: tuple[str | None, ...] = ("norm",), param_dtype=jnp.float32):
        self.scale = _param(None, jax.nn.initializers.zeros, (dim,), param_dtype, names)

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        variance = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
        normed = x32 * jax.lax.rsqrt(variance + EPSILON)
        scale = self.scale[...].astype(jnp.float32).reshape((1,) * (x.ndim - 1) + (-1,))
        return (normed * (1.0 + scale)).astype(x.dtype)


class Embedder(nnx.Module):
    """Token embedding scaled by ``sqrt(embed_dim)``; its transpose is the output layer."""

    def __init__(self, vocab_size: int, embed_dim: int, *, rngs: nnx.Rngs, param_dtype=jnp.float32, dtype=jnp.float32):
        # std embed_dim**-0.5: inputs (times sqrt(embed_dim)) and initial logits both have unit scale.
        self.embedding = _param(rngs, fan_in_normal(embed_dim), (vocab_size, embed_dim), param_dtype, ("vocab", "embed"))
        self.embed_dim = embed_dim
        self.dtype = jnp.dtype(dtype).name

    def encode(self, tokens: jax.Array) -> jax.Array:
        x = jnp.take(self.embedding[...], tokens, axis=0).astype(self.dtype)
        # Gemma rounds the multiplier to the compute dtype first; kept so published weights match.
        return x * jnp.sqrt(jnp.float32(self.embed_dim)).astype(self.dtype)

    def decode(self, x: jax.Array) -> jax.Array:
        return jnp.einsum("...d,vd->...v", x, self.embedding[...].astype(x.dtype))


class FeedForward(nnx.Module):
    """``down(gelu(x @ gate) * (x @ up))``; gate and up are one ``(2, embed, hidden)`` kernel."""

    def __init__(self, embed_dim: int, hidden_dim: int, *, rngs: nnx.Rngs, param_dtype=jnp.float32, dtype=jnp.float32):
        self.gate_up_proj = _param(
            rngs, fan_in_normal(embed_dim), (2, embed_dim, hidden_dim), param_dtype, (None, "embed", "mlp")
        )
        self.down_proj = _param(rngs, fan_in_normal(hidden_dim), (hidden_dim, embed_dim), param_dtype, ("mlp", "embed"))
        self.dtype = jnp.dtype(dtype).name

    def __call__(self, x: jax.Array) -> jax.Array:
        gate_up = jnp.einsum("...d,kdf->k...f", x, self.gate_up_proj[...].astype(self.dtype))
        hidden = jax.nn.gelu(gate_up[0], approximate=True) * gate_up[1]
        return jnp.einsum("...f,fd->...d", hidden, self.down_proj[...].astype(self.dtype))


def apply_rope(x: jax.Array, positions: jax.Array, *, base: float, scale: float = 1.0) -> jax.Array:
    """Rotary position embedding over the last axis, halves rotated (not interleaved).

    Args:
      x: ``(batch, length, heads, head_dim)``.
      positions: ``(batch, length)`` integer positions.
      base: the base frequency (``10_000`` local, ``1_000_000`` global in Gemma 3).
      scale: positions are divided by it (context extension).

    Example:
      >>> import jax.numpy as jnp
      >>> x = jnp.ones((1, 1, 1, 4))
      >>> bool(jnp.allclose(apply_rope(x, jnp.zeros((1, 1), jnp.int32), base=10_000.0), x))
      True
    """
    half = x.shape[-1] // 2
    fraction = 2.0 * jnp.arange(half, dtype=jnp.float32) / x.shape[-1]
    inverse_timescale = base**-fraction
    angles = positions.astype(jnp.float32)[..., None, None] / scale * inverse_timescale.reshape(1, 1, 1, half)
    sin, cos = jnp.sin(angles), jnp.cos(angles)
    first, second = jnp.split(x.astype(jnp.float32), 2, axis=-1)
    rotated = jnp.concatenate([first * cos - second * sin, second * cos + first * sin], axis=-1)
    return rotated.astype(x.dtype)


def softcap(x: jax.Array, cap: float | None) -> jax.Array:
    """``cap * tanh(x / cap)``; identity when ``cap`` is None."""
    if cap is None:
        return x
    return jnp.tanh(x / cap) * cap
