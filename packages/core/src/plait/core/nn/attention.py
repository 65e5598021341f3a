"""Dot-product attention and attention masks.

Layout, as in Flax: queries ``(batch..., q_length, num_heads, depth)``, keys and values
``(batch..., kv_length, num_kv_heads, depth)``; attention weights
``(batch..., num_heads, q_length, kv_length)``. Masks are broadcastable to the weights'
shape and keep an entry where they are true (non-zero).

Both ``plait.nnx`` and ``plait.linen`` call these functions. Each keyword of either
Flax flavour is accepted: ``promote_dtype`` / ``is_causal`` (NNX) and
``force_fp32_for_softmax`` / ``einsum_dot_general`` / custom einsums (Linen).

Grouped-query attention: when ``num_kv_heads`` divides ``num_heads``, each group of
``num_heads // num_kv_heads`` consecutive query heads shares one key/value head.

Examples:
  >>> import jax, jax.numpy as jnp
  >>> from plait.core.nn import attention
  >>> q = k = v = jnp.ones((2, 5, 4, 8))       # batch, length, heads, depth
  >>> attention.dot_product_attention(q, k, v).shape
  (2, 5, 4, 8)
  >>> attention.make_causal_mask(jnp.ones((2, 5))).shape
  (2, 1, 5, 5)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from . import dtypes as _dtypes
from ._errors import NNShapeError

Array = jax.Array

_QK_RANK = (
    "dot-product attention needs query and key of the same rank "
    "(batch..., length, heads, depth), but query has shape {q} and key has shape {k}."
)
_BATCH = (
    "dot-product attention needs the same batch axes on {names}, but got shapes {shapes}. "
    "Broadcast or reshape the inputs so that everything before (length, heads, depth) agrees."
)
_DEPTH = (
    "query and key must have the same depth per head (last axis), but query has shape {q} "
    "(depth {dq}) and key has shape {k} (depth {dk})."
)
_HEADS = (
    "the number of query heads ({hq}) must equal the number of key/value heads ({hk}) or be "
    "a multiple of it (grouped-query attention); got query shape {q} and key shape {k}."
)
_KV = (
    "key and value must agree on kv_length and heads, but key has shape {k} and value has "
    "shape {v}."
)
_MASK_RANK = (
    "combine_masks needs masks of one rank, but got masks of shapes {shapes}. "
    "Expand them (e.g. mask[:, None]) so that all have the same number of axes."
)


def _check_qk(query: Array, key: Array) -> None:
    if query.ndim != key.ndim or query.ndim < 3:
        raise NNShapeError(_QK_RANK.format(q=query.shape, k=key.shape))
    if query.shape[:-3] != key.shape[:-3]:
        raise NNShapeError(_BATCH.format(names="query and key", shapes=(query.shape, key.shape)))
    if query.shape[-1] != key.shape[-1]:
        raise NNShapeError(
            _DEPTH.format(q=query.shape, dq=query.shape[-1], k=key.shape, dk=key.shape[-1])
        )
    if query.shape[-2] % key.shape[-2] != 0:
        raise NNShapeError(
            _HEADS.format(hq=query.shape[-2], hk=key.shape[-2], q=query.shape, k=key.shape)
        )


def _repeat_kv_heads(x: Array, num_heads: int) -> Array:
    """Repeats key/value heads so that query head ``h`` sees kv head ``h // group``."""
    group = num_heads // x.shape[-2]
    return x if group == 1 else jnp.repeat(x, group, axis=-2)


def _causal_mask(q_length: int, kv_length: int, ndim: int) -> Array:
    # Query i attends to keys 0..i (top-left aligned), as jax.nn.dot_product_attention.
    # Leading singleton axes make the rank explicit (no implicit rank promotion).
    mask = jnp.tril(jnp.ones((q_length, kv_length), dtype=jnp.bool_))
    return mask.reshape((1,) * (ndim - 2) + mask.shape)


def dot_product_attention_weights(
    query: Array,
    key: Array,
    bias: Array | None = None,
    mask: Array | None = None,
    broadcast_dropout: bool = True,
    dropout_rng: Array | None = None,
    dropout_rate: float = 0.0,
    deterministic: bool = False,
    dtype: Any = None,
    precision: Any = None,
    module: Any = None,
    promote_dtype: Callable[..., Any] = _dtypes.promote_dtype,
    is_causal: bool = False,
    *,
    force_fp32_for_softmax: bool = False,
    einsum_dot_general: Callable[..., Array] | None = None,
    einsum: Callable[..., Array] | None = None,
) -> Array:
    """Computes ``softmax(q k^T / sqrt(depth) + bias, masked)`` with optional dropout.

    Args:
      query: ``(batch..., q_length, num_heads, depth)``.
      key: ``(batch..., kv_length, num_kv_heads, depth)``; ``num_kv_heads`` divides
        ``num_heads``.
      bias: added to the logits; broadcastable to ``(batch..., num_heads, q_length,
        kv_length)``.
      mask: logits where the mask is false are replaced by the dtype's most negative
        value before the softmax.
      broadcast_dropout: share one dropout pattern across batch and head axes.
      dropout_rng: key for dropout; required when dropout is active.
      dropout_rate: probability of dropping a weight.
      deterministic: disable dropout.
      dtype: computation dtype (default: promoted from ``query`` and ``key``).
      precision: passed to the einsum.
      module: if given, ``module.sow("intermediates", "attention_weights", w)`` records
        the weights (before dropout).
      promote_dtype: ``promote_dtype((query, key), dtype=dtype)`` casts the inputs.
      is_causal: also mask keys after each query position.
      force_fp32_for_softmax: compute the softmax in float32 (Linen).
      einsum_dot_general: dot_general used by the default einsum (Linen).
      einsum: replaces ``jnp.einsum`` for ``q k^T`` (Linen).

    Returns:
      Weights of shape ``(batch..., num_heads, q_length, kv_length)``.

    Examples:
      >>> import jax.numpy as jnp
      >>> w = dot_product_attention_weights(jnp.ones((3, 2, 4)), jnp.ones((5, 2, 4)))
      >>> w.shape, float(w.sum(-1)[0, 0])
      ((2, 3, 5), 1.0)
    """
    query, key = promote_dtype((query, key), dtype=dtype)
    dtype = query.dtype
    _check_qk(query, key)
    key = _repeat_kv_heads(key, query.shape[-2])

    if einsum is None:
        dot_general = lax.dot_general if einsum_dot_general is None else einsum_dot_general
        einsum = functools.partial(jnp.einsum, _dot_general=dot_general)
    depth = query.shape[-1]
    query = query / jnp.sqrt(depth).astype(dtype)
    logits = einsum("...qhd,...khd->...hqk", query, key, precision=precision)

    if bias is not None:
        logits = logits + bias
    if is_causal:
        causal = _causal_mask(logits.shape[-2], logits.shape[-1], logits.ndim)
        mask = causal if mask is None else jnp.logical_and(mask, causal)
    if mask is not None:
        logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)

    if force_fp32_for_softmax and dtype != jnp.float32:
        logits = logits.astype(jnp.float32)
    weights = jax.nn.softmax(logits).astype(dtype)

    if module is not None:
        module.sow("intermediates", "attention_weights", weights)

    if not deterministic and dropout_rate > 0.0:
        if dropout_rng is None:
            raise ValueError(
                f"attention dropout is active (dropout_rate={dropout_rate}, "
                "deterministic=False) but dropout_rng is None. Pass a PRNG key as "
                "dropout_rng, or deterministic=True to turn dropout off."
            )
        keep_prob = 1.0 - dropout_rate
        if broadcast_dropout:
            # One pattern for every batch element and head: only (q, k) varies.
            drop_shape = (1,) * (weights.ndim - 2) + weights.shape[-2:]
        else:
            drop_shape = weights.shape
        keep = jax.random.bernoulli(dropout_rng, keep_prob, drop_shape)
        weights = weights * (keep.astype(dtype) / jnp.asarray(keep_prob, dtype=dtype))
    return weights


def dot_product_attention(
    query: Array,
    key: Array,
    value: Array,
    bias: Array | None = None,
    mask: Array | None = None,
    broadcast_dropout: bool = True,
    dropout_rng: Array | None = None,
    dropout_rate: float = 0.0,
    deterministic: bool = False,
    dtype: Any = None,
    precision: Any = None,
    module: Any = None,
    promote_dtype: Callable[..., Any] = _dtypes.promote_dtype,
    is_causal: bool = False,
    *,
    force_fp32_for_softmax: bool = False,
    einsum_dot_general: Callable[..., Array] | None = None,
    qk_attn_weights_einsum: Callable[..., Array] | None = None,
    attn_weights_value_einsum: Callable[..., Array] | None = None,
) -> Array:
    """Computes ``softmax(q k^T / sqrt(depth)) v`` (Vaswani et al., 2017).

    Args: as :func:`dot_product_attention_weights`, plus
      value: ``(batch..., kv_length, num_kv_heads, v_depth)``.
      qk_attn_weights_einsum: einsum for ``q k^T`` (Linen).
      attn_weights_value_einsum: einsum for ``weights v`` (Linen).

    Returns:
      ``(batch..., q_length, num_heads, v_depth)``.

    Raises:
      NNShapeError: if the shapes of query, key and value do not fit together.

    Examples:
      >>> import jax.numpy as jnp
      >>> q = jnp.ones((4, 2, 8)); kv = jnp.ones((6, 1, 8))   # 2 query heads, 1 kv head
      >>> dot_product_attention(q, kv, kv).shape
      (4, 2, 8)
    """
    query, key, value = promote_dtype((query, key, value), dtype=dtype)
    _check_qk(query, key)
    if value.ndim != key.ndim or value.shape[:-1] != key.shape[:-1]:
        raise NNShapeError(_KV.format(k=key.shape, v=value.shape))
    weights = dot_product_attention_weights(
        query,
        key,
        bias,
        mask,
        broadcast_dropout,
        dropout_rng,
        dropout_rate,
        deterministic,
        query.dtype,
        precision,
        module,
        promote_dtype,
        is_causal,
        force_fp32_for_softmax=force_fp32_for_softmax,
        einsum_dot_general=einsum_dot_general,
        einsum=qk_attn_weights_einsum,
    )
    value = _repeat_kv_heads(value, query.shape[-2])
    if attn_weights_value_einsum is None:
        dot_general = lax.dot_general if einsum_dot_general is None else einsum_dot_general
        attn_weights_value_einsum = functools.partial(jnp.einsum, _dot_general=dot_general)
    return attn_weights_value_einsum("...hqk,...khd->...qhd", weights, value, precision=precision)


def make_attention_mask(
    query_input: Array,
    key_input: Array,
    pairwise_fn: Callable[..., Any] = jnp.multiply,
    extra_batch_dims: int = 0,
    dtype: Any = jnp.float32,
) -> Array:
    """Builds a ``(batch..., 1, q_length, kv_length)`` mask from per-position inputs.

    Entry ``[..., 0, i, j]`` is ``pairwise_fn(query_input[..., i], key_input[..., j])``.

    Args:
      query_input: ``(batch..., q_length)``, e.g. a padding indicator.
      key_input: ``(batch..., kv_length)``.
      pairwise_fn: how to combine a query entry and a key entry.
      extra_batch_dims: leading singleton axes to add.
      dtype: the mask's dtype.

    Examples:
      >>> import jax.numpy as jnp
      >>> valid = jnp.array([[1, 1, 0]])
      >>> make_attention_mask(valid, valid)[0, 0].astype(int).tolist()
      [[1, 1, 0], [1, 1, 0], [0, 0, 0]]
    """
    mask = pairwise_fn(jnp.expand_dims(query_input, -1), jnp.expand_dims(key_input, -2))
    mask = jnp.expand_dims(mask, -3)
    mask = jnp.expand_dims(mask, tuple(range(extra_batch_dims)))
    return mask.astype(dtype)


def make_causal_mask(x: Array, extra_batch_dims: int = 0, dtype: Any = jnp.float32) -> Array:
    """Builds a causal mask ``(batch..., 1, length, length)`` for inputs ``x`` of shape
    ``(batch..., length)``: position ``i`` may attend to positions ``j <= i``.

    Examples:
      >>> import jax.numpy as jnp
      >>> make_causal_mask(jnp.ones((1, 3)))[0, 0].astype(int).tolist()
      [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    """
    positions = jnp.broadcast_to(jnp.arange(x.shape[-1], dtype=jnp.int32), x.shape)
    return make_attention_mask(
        positions, positions, jnp.greater_equal, extra_batch_dims=extra_batch_dims, dtype=dtype
    )


def combine_masks(*masks: Array | None, dtype: Any = jnp.float32) -> Array | None:
    """Logical-ANDs masks of one rank (None entries are skipped; all None gives None).

    Examples:
      >>> import jax.numpy as jnp
      >>> combine_masks(jnp.array([1, 1, 0]), None, jnp.array([0, 1, 1])).tolist()
      [0.0, 1.0, 0.0]
    """
    present = [m for m in masks if m is not None]
    if not present:
        return None
    if len({m.ndim for m in present}) != 1:
        raise NNShapeError(_MASK_RANK.format(shapes=[m.shape for m in present]))
    combined = functools.reduce(jnp.logical_and, present)
    return combined.astype(dtype)


__all__ = [
    "combine_masks",
    "dot_product_attention",
    "dot_product_attention_weights",
    "make_attention_mask",
    "make_causal_mask",
]
