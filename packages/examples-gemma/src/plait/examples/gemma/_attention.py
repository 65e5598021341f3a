"""Grouped-query attention with sliding windows, soft-capping and a position-addressed KV cache.

Masks are built from positions, never from slot indices: a key is visible to a query
when it is a real token (position >= 0), not in the query's future, and (local layers)
fewer than ``window`` positions behind. The cache stores each token's key and value at
slot ``position % cache_length`` together with that position, so

* left- and right-padded batches work unchanged (padding is never written and has
  position -1 in the mask), and every row may be at a different position;
* a local layer's cache is a ring of ``sliding_window`` slots: the last ``window``
  positions of a row always have distinct slots;
* a call attends over ``[cache before the call ; keys of this call]`` and then writes
  its keys, so prefill (many tokens) and decode (one token) are the same code.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from plait import nnx

from ._config import LOCAL, ModelConfig
from ._errors import CacheError
from ._layers import RMSNorm, _param, apply_rope, fan_in_normal, softcap

# Large and finite: a query with no visible key (padding) gets uniform weights, not NaN.
MASK_VALUE = -2.3819763e38


def attention_weights_mask(
    query_positions: jax.Array, key_positions: jax.Array, *, window: int | None
) -> jax.Array:
    """``(batch, queries, keys)`` bool: which keys each query may attend to.

    Example:
      >>> import jax.numpy as jnp
      >>> pos = jnp.arange(4)[None]
      >>> attention_weights_mask(pos, pos, window=2)[0].astype(int).tolist()
      [[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]]
    """
    q = query_positions[:, :, None]
    k = key_positions[:, None, :]
    visible = (k >= 0) & (k <= q)
    if window is not None:
        visible = visible & (k > q - window)
    return visible


def dot_product_attention(
    query: jax.Array,
    key: jax.Array,
    value: jax.Array,
    mask: jax.Array,
    *,
    logit_softcap: float | None = None,
) -> jax.Array:
    """Grouped-query attention on already-scaled queries.

    Args:
      query: ``(batch, q_len, num_heads, head_dim)``.
      key, value: ``(batch, k_len, num_kv_heads, head_dim)``; ``num_heads`` is a multiple
        of ``num_kv_heads`` and consecutive query heads share a key/value head.
      mask: ``(batch, q_len, k_len)`` bool.
      logit_softcap: soft-capping of the logits, or None.

    Returns:
      ``(batch, q_len, num_heads, head_dim)`` in ``value``'s dtype. Logits and softmax
      are float32.
    """
    batch, q_len, num_heads, head_dim = query.shape
    num_kv_heads = key.shape[2]
    grouped = query.reshape(batch, q_len, num_kv_heads, num_heads // num_kv_heads, head_dim)
    logits = jnp.einsum("blkgd,bskd->bkgls", grouped, key, preferred_element_type=jnp.float32)
    logits = softcap(logits, logit_softcap)
    logits = jnp.where(mask[:, None, None, :, :], logits, MASK_VALUE)
    probs = jax.nn.softmax(logits, axis=-1).astype(value.dtype)
    out = jnp.einsum("bkgls,bskd->blkgd", probs, value)
    return out.reshape(batch, q_len, num_heads, head_dim)


class Attention(nnx.Module):
    """One Gemma attention layer (local or global) with its optional KV cache.

    Parameters: ``q_proj (embed, heads, head_dim)``, ``kv_proj (2, embed, kv_heads,
    head_dim)`` (keys then values), ``o_proj (heads, head_dim, embed)``, and with
    ``use_qk_norm`` the per-head ``query_norm`` / ``key_norm``. Cache (after
    :meth:`init_cache`): ``cached_key`` / ``cached_value`` ``(batch, slots, kv_heads,
    head_dim)`` and ``cached_position`` ``(batch, slots)`` (-1 = empty), all ``nnx.Cache``.
    """

    def __init__(self, config: ModelConfig, layer_type: str, *, rngs: nnx.Rngs):
        d, h, kv, hd = config.embed_dim, config.num_heads, config.num_kv_heads, config.head_dim
        pdt = jnp.dtype(config.param_dtype)
        self.q_proj = _param(rngs, fan_in_normal(d), (d, h, hd), pdt, ("embed", "heads", "head_dim"))
        self.kv_proj = _param(rngs, fan_in_normal(d), (2, d, kv, hd), pdt, (None, "embed", "kv_heads", "head_dim"))
        self.o_proj = _param(rngs, fan_in_normal(h * hd), (h, hd, d), pdt, ("heads", "head_dim", "embed"))
        if config.use_qk_norm:
            self.query_norm = RMSNorm(hd, param_dtype=pdt)
            self.key_norm = RMSNorm(hd, param_dtype=pdt)
        self.use_qk_norm = config.use_qk_norm
        self.layer_type = layer_type
        self.window = config.sliding_window if layer_type == LOCAL else None
        self.rope_base = config.rope_base_local if layer_type == LOCAL else config.rope_base_global
        self.rope_scale = 1.0 if layer_type == LOCAL else config.rope_scale_global
        self.query_scale = config.query_scale
        self.logit_softcap = config.attn_logit_softcap
        self.dtype = jnp.dtype(config.dtype).name

    # -- cache ------------------------------------------------------------------------------

    def cache_length(self, max_length: int) -> int:
        """Slots this layer needs to decode up to ``max_length`` positions."""
        return max_length if self.window is None else min(self.window, max_length)

    def init_cache(self, batch_size: int, max_length: int, dtype=None) -> None:
        """Creates an empty cache for ``batch_size`` rows and positions ``< max_length``."""
        dtype = jnp.dtype(dtype or self.dtype)
        slots = self.cache_length(max_length)
        shape = (batch_size, slots, self.kv_proj.shape[2], self.kv_proj.shape[3])
        self.cached_key = nnx.Cache(jnp.zeros(shape, dtype))
        self.cached_value = nnx.Cache(jnp.zeros(shape, dtype))
        self.cached_position = nnx.Cache(jnp.full((batch_size, slots), -1, jnp.int32))

    def has_cache(self) -> bool:
        return hasattr(self, "cached_key")

    def clear_cache(self) -> None:
        for name in ("cached_key", "cached_value", "cached_position"):
            if hasattr(self, name):
                delattr(self, name)

    def _write_cache(self, key: jax.Array, value: jax.Array, positions: jax.Array) -> None:
        slots = self.cached_position.shape[1]
        last = jnp.max(positions, axis=1, keepdims=True)
        # Only a row's newest `slots` tokens are kept, so their slots are distinct.
        keep = (positions >= 0) & (positions > last - slots)
        slot = jnp.where(keep, positions % slots, slots)  # out of range -> dropped
        rows = jnp.arange(positions.shape[0])[:, None]
        self.cached_key.value = self.cached_key[...].at[rows, slot].set(key.astype(self.cached_key.dtype), mode="drop")
        self.cached_value.value = self.cached_value[...].at[rows, slot].set(value.astype(self.cached_value.dtype), mode="drop")
        self.cached_position.value = self.cached_position[...].at[rows, slot].set(positions, mode="drop")

    # -- forward ----------------------------------------------------------------------------

    def __call__(self, x: jax.Array, positions: jax.Array, *, use_cache: bool = False) -> jax.Array:
        """Attends ``x (batch, length, embed)`` at ``positions (batch, length)`` (-1 = padding).

        With ``use_cache`` the keys of earlier calls are visible and this call's keys
        are stored for later ones.
        """
        dtype = self.dtype
        query = jnp.einsum("bld,dhk->blhk", x, self.q_proj[...].astype(dtype))
        key, value = jnp.einsum("bld,cdhk->cblhk", x, self.kv_proj[...].astype(dtype))
        if self.use_qk_norm:
            query = self.query_norm(query)
            key = self.key_norm(key)
        rope_positions = jnp.maximum(positions, 0)
        query = apply_rope(query, rope_positions, base=self.rope_base, scale=self.rope_scale)
        key = apply_rope(key, rope_positions, base=self.rope_base, scale=self.rope_scale)
        query = query * jnp.asarray(self.query_scale, dtype)

        key_positions = positions
        all_keys, all_values = key, value
        if use_cache:
            if not self.has_cache():
                raise CacheError(
                    "Attention was called with use_cache=True but has no cache.\n"
                    "Fix: call model.init_cache(batch_size, max_length) first."
                )
            all_keys = jnp.concatenate([self.cached_key[...].astype(dtype), key], axis=1)
            all_values = jnp.concatenate([self.cached_value[...].astype(dtype), value], axis=1)
            key_positions = jnp.concatenate([self.cached_position[...], positions], axis=1)
        mask = attention_weights_mask(positions, key_positions, window=self.window)
        out = dot_product_attention(query, all_keys, all_values, mask, logit_softcap=self.logit_softcap)
        if use_cache:
            self._write_cache(key, value, positions)
        return jnp.einsum("blhk,hkd->bld", out, self.o_proj[...].astype(dtype))
