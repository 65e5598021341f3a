"""Multi-head attention, rotary position embeddings and the attention functions."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from plait.core import Cache, Rngs, RngStream
from plait.core.nn import dtypes, initializers
from plait.core.nn.attention import (
    combine_masks,
    dot_product_attention,
    dot_product_attention_weights,
    make_attention_mask,
    make_causal_mask,
)

from .._errors import check_feature_axis, shape_error
from .._module import Module
from ._common import first_from
from ._linear import LinearGeneral, default_kernel_init
from ._norm import LayerNorm

Array = jax.Array
_EMPTY: Mapping[str, Any] = MappingProxyType({})
_ZEROS_INIT = initializers.zeros_init()

__all__ = [
    "MultiHeadAttention",
    "RoPE",
    "combine_masks",
    "dot_product_attention",
    "dot_product_attention_weights",
    "dot_product_attention_with_rope",
    "make_attention_mask",
    "make_causal_mask",
]


class RoPE(Module):
    """Rotary position embedding (Su et al., 2021) for ``(batch..., length, heads, dim)``.

    The first ``embedding_size`` features (default: all) are split into two halves
    ``(x1, x2)`` rotated by angle ``position * theta ** (-2i / embedding_size)``:
    ``(x1 cos - x2 sin, x2 cos + x1 sin)``. Positions default to ``0..length-1``.
    ``max_seq_len``, when set, bounds the accepted positions' length axis.

    Examples:
      >>> import jax.numpy as jnp
      >>> from plait import nnx
      >>> rope = nnx.RoPE()
      >>> x = jnp.ones((2, 5, 3, 8))
      >>> rope(x).shape
      (2, 5, 3, 8)
      >>> bool(jnp.allclose(rope(x)[:, 0], x[:, 0]))   # position 0 is not rotated
      True
    """

    def __init__(
        self,
        theta: float = 10000.0,
        embedding_size: int | None = None,
        max_seq_len: int | None = None,
    ):
        self.theta = theta
        self.embedding_size = embedding_size
        self.max_seq_len = max_seq_len

    def __call__(self, x: Array, input_positions: Array | None = None) -> Array:
        """Rotates ``x`` according to each token's position."""
        if x.ndim < 3:
            raise shape_error(
                self,
                argument="x",
                expected="(batch..., length, heads, dim)",
                actual=x.shape,
                fix="RoPE rotates per-head features; reshape to (..., length, heads, dim).",
            )
        dim = self.embedding_size or x.shape[-1]
        if dim % 2 or dim > x.shape[-1]:
            raise shape_error(
                self,
                argument="x",
                expected=f"(..., >= {dim}) with an even embedding size",
                actual=x.shape,
                fix="use an even embedding_size no larger than the last axis.",
            )
        length = x.shape[-3]
        if self.max_seq_len is not None and length > self.max_seq_len:
            raise shape_error(
                self,
                argument="x",
                expected=f"length <= max_seq_len={self.max_seq_len}",
                actual=x.shape,
                fix="shorten the sequence or raise max_seq_len.",
            )
        if input_positions is None:
            input_positions = jnp.arange(length)
        half = dim // 2
        inv_freq = 1.0 / (self.theta ** (jnp.arange(half, dtype=jnp.float32) * 2.0 / dim))
        positions = input_positions.astype(jnp.float32)[..., None]  # (..., length, 1)
        angles = positions * inv_freq.reshape((1,) * (positions.ndim - 1) + (half,))
        angles = angles[..., None, :]  # heads axis: (..., length, 1, half)
        angles = angles.reshape((1,) * (x.ndim - angles.ndim) + angles.shape)
        sin, cos = jnp.sin(angles), jnp.cos(angles)
        x1, x2, rest = x[..., :half], x[..., half:dim], x[..., dim:]
        rotated = [x1 * cos - x2 * sin, x2 * cos + x1 * sin, rest]
        return jnp.concatenate(rotated, axis=-1).astype(x.dtype)


def dot_product_attention_with_rope(
    query: Array,
    key: Array,
    value: Array,
    *,
    rope: RoPE,
    input_positions: Array | None = None,
    **kwargs: Any,
) -> Array:
    """``dot_product_attention`` after rotating ``query`` and ``key`` with ``rope``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from plait import nnx
      >>> q = jnp.ones((1, 4, 2, 8))
      >>> nnx.dot_product_attention_with_rope(q, q, q, rope=nnx.RoPE()).shape
      (1, 4, 2, 8)
    """
    query = rope(query, input_positions)
    key = rope(key, input_positions)
    return dot_product_attention(query, key, value, **kwargs)


class MultiHeadAttention(Module):
    """Multi-head dot-product attention with optional grouped KV heads and decode cache.

    Projections ``query`` / ``key`` / ``value`` are ``LinearGeneral`` layers mapping the
    features to ``(heads, head_dim)`` (``num_kv_heads`` heads for key and value);
    ``out`` maps ``(num_heads, head_dim)`` back to ``out_features``. With
    ``normalize_qk`` the projected queries and keys go through ``LayerNorm``s.

    Decoding: ``init_cache(input_shape)`` (or ``nnx.view(model, decode=True,
    batch_size=..., max_length=...)``) creates ``cached_key`` / ``cached_value`` /
    ``cache_index`` (``Cache`` variables); each decode call then takes one token, writes
    its key/value at ``cache_index`` and attends to every position up to it.

    Examples:
      >>> import jax.numpy as jnp
      >>> from plait import nnx
      >>> mha = nnx.MultiHeadAttention(num_heads=2, in_features=8, decode=False,
      ...                              rngs=nnx.Rngs(0))
      >>> mha(jnp.ones((3, 5, 8))).shape
      (3, 5, 8)
    """

    def __init__(
        self,
        num_heads: int,
        in_features: int,
        qkv_features: int | None = None,
        out_features: int | None = None,
        num_kv_heads: int | None = None,
        in_kv_features: int | None = None,
        *,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        broadcast_dropout: bool = True,
        dropout_rate: float = 0.0,
        deterministic: bool | None = None,
        precision: Any = None,
        kernel_init: Any = default_kernel_init,
        out_kernel_init: Any = None,
        bias_init: Any = _ZEROS_INIT,
        out_bias_init: Any = None,
        use_bias: bool = True,
        attention_fn: Callable[..., Array] = dot_product_attention,
        decode: bool | None = None,
        normalize_qk: bool = False,
        qkv_promote_dtype: Any = dtypes.promote_dtype,
        out_promote_dtype: Any = dtypes.promote_dtype,
        ln_promote_dtype: Any = dtypes.promote_dtype,
        qkv_dot_general: Any = None,
        out_dot_general: Any = None,
        qkv_dot_general_cls: Any = None,
        out_dot_general_cls: Any = None,
        rngs: Rngs,
        keep_rngs: bool = True,
        kernel_metadata: Mapping[str, Any] = _EMPTY,
        out_kernel_metadata: Mapping[str, Any] = _EMPTY,
        bias_metadata: Mapping[str, Any] = _EMPTY,
        out_bias_metadata: Mapping[str, Any] = _EMPTY,
        query_ln_scale_metadata: Mapping[str, Any] = _EMPTY,
        key_ln_scale_metadata: Mapping[str, Any] = _EMPTY,
    ):
        self.num_heads = num_heads
        self.in_features = in_features
        self.qkv_features = qkv_features if qkv_features is not None else in_features
        self.out_features = out_features if out_features is not None else in_features
        self.num_kv_heads = num_kv_heads if num_kv_heads is not None else num_heads
        self.in_kv_features = in_kv_features if in_kv_features is not None else in_features
        if self.qkv_features % num_heads != 0:
            raise ValueError(
                f"MultiHeadAttention: qkv_features={self.qkv_features} must be divisible by "
                f"num_heads={num_heads}."
            )
        if num_heads % self.num_kv_heads != 0:
            raise ValueError(
                f"MultiHeadAttention: num_heads={num_heads} must be a multiple of "
                f"num_kv_heads={self.num_kv_heads} (each key/value head serves a group of "
                "query heads)."
            )
        self.head_dim = self.qkv_features // num_heads
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.broadcast_dropout = broadcast_dropout
        self.dropout_rate = dropout_rate
        self.deterministic = deterministic
        self.precision = precision
        self.kernel_init = kernel_init
        self.out_kernel_init = out_kernel_init
        self.bias_init = bias_init
        self.out_bias_init = out_bias_init
        self.use_bias = use_bias
        self.attention_fn = attention_fn
        self.decode = decode
        self.normalize_qk = normalize_qk
        self.qkv_promote_dtype = qkv_promote_dtype
        self.out_promote_dtype = out_promote_dtype
        self.ln_promote_dtype = ln_promote_dtype
        self.qkv_dot_general = qkv_dot_general
        self.out_dot_general = out_dot_general
        self.qkv_dot_general_cls = qkv_dot_general_cls
        self.out_dot_general_cls = out_dot_general_cls

        def projection(features: int, heads: int) -> LinearGeneral:
            return LinearGeneral(
                features,
                (heads, self.head_dim),
                dtype=dtype,
                param_dtype=param_dtype,
                kernel_init=kernel_init,
                bias_init=bias_init,
                use_bias=use_bias,
                precision=precision,
                promote_dtype=qkv_promote_dtype,
                dot_general=qkv_dot_general,
                dot_general_cls=qkv_dot_general_cls,
                rngs=rngs,
                kernel_metadata=kernel_metadata,
                bias_metadata=bias_metadata,
            )

        self.query = projection(in_features, num_heads)
        self.key = projection(self.in_kv_features, self.num_kv_heads)
        self.value = projection(self.in_kv_features, self.num_kv_heads)

        if normalize_qk:
            # Normalized queries/keys keep attention logits bounded at large learning rates
            # (Dehghani et al., 2023).
            def qk_norm(metadata: Mapping[str, Any]) -> LayerNorm:
                return LayerNorm(
                    self.head_dim,
                    use_bias=False,
                    dtype=dtype,
                    param_dtype=param_dtype,
                    promote_dtype=ln_promote_dtype,
                    rngs=rngs,
                    scale_metadata=metadata,
                )

            self.query_ln = qk_norm(query_ln_scale_metadata)
            self.key_ln = qk_norm(key_ln_scale_metadata)
        else:
            self.query_ln = None
            self.key_ln = None

        self.out = LinearGeneral(
            (num_heads, self.head_dim),
            self.out_features,
            axis=(-2, -1),
            kernel_init=out_kernel_init or kernel_init,
            bias_init=out_bias_init or bias_init,
            use_bias=use_bias,
            dtype=dtype,
            param_dtype=param_dtype,
            precision=precision,
            promote_dtype=out_promote_dtype,
            dot_general=out_dot_general,
            dot_general_cls=out_dot_general_cls,
            rngs=rngs,
            kernel_metadata=out_kernel_metadata,
            bias_metadata=out_bias_metadata,
        )
        self.rngs = rngs["dropout"].fork() if keep_rngs and dropout_rate > 0 else None
        self.cached_key: Cache | None = None
        self.cached_value: Cache | None = None
        self.cache_index: Cache | None = None

    def __call__(
        self,
        inputs_q: Array,
        inputs_k: Array | None = None,
        inputs_v: Array | None = None,
        *,
        mask: Array | None = None,
        deterministic: bool | None = None,
        rngs: Rngs | RngStream | None = None,
        sow_weights: bool = False,
        decode: bool | None = None,
        is_causal: bool = False,
        out_sharding: Any = None,
        qkv_sharding: Any = None,
        input_positions: Array | None = None,
    ) -> Array:
        """Attends from ``inputs_q`` to ``inputs_k`` / ``inputs_v`` (default: self-attention).

        Args:
          inputs_q: ``(batch..., q_length, in_features)``.
          inputs_k: ``(batch..., kv_length, in_kv_features)``; defaults to ``inputs_q``.
          inputs_v: defaults to ``inputs_k``.
          mask: broadcastable to ``(batch..., num_heads, q_length, kv_length)``; false
            entries are masked out.
          deterministic: disable attention dropout (default: the module's flag).
          rngs: dropout randomness (default: the stream kept at construction).
          sow_weights: record the attention weights with ``sow`` as intermediates.
          decode: use the autoregressive cache (default: the module's flag).
          is_causal: apply a causal mask.
          out_sharding, qkv_sharding: output shardings of the out / q,k,v projections.
          input_positions: token positions, passed to ``attention_fn`` when given.

        Returns:
          ``(batch..., q_length, out_features)``.
        """
        if rngs is None:
            rngs = self.rngs
        elif isinstance(rngs, Rngs):
            rngs = rngs["dropout"]
        if inputs_k is None:
            if inputs_v is not None:
                raise ValueError(
                    "MultiHeadAttention: inputs_v was given without inputs_k. Pass inputs_k as "
                    "well (it is not inferred from inputs_v)."
                )
            inputs_k = inputs_q
        if inputs_v is None:
            inputs_v = inputs_k
        check_feature_axis(
            self, inputs_q, size=self.in_features, param="in_features", argument="inputs_q"
        )
        check_feature_axis(
            self, inputs_k, size=self.in_kv_features, param="in_kv_features", argument="inputs_k"
        )
        check_feature_axis(
            self, inputs_v, size=self.in_kv_features, param="in_kv_features", argument="inputs_v"
        )

        query = self.query(inputs_q, out_sharding=qkv_sharding)
        key = self.key(inputs_k, out_sharding=qkv_sharding)
        value = self.value(inputs_v, out_sharding=qkv_sharding)
        if self.normalize_qk:
            assert self.query_ln is not None and self.key_ln is not None
            query = self.query_ln(query)
            key = self.key_ln(key)

        # Flax requires decode to be set somewhere; plait reads an unset flag as False.
        if decode is None:
            decode = bool(self.decode)
        if decode:
            key, value, mask = self._update_cache(key, value, mask)

        if self.dropout_rate > 0.0:
            deterministic = first_from(
                deterministic,
                self.deterministic,
                error_msg=(
                    "MultiHeadAttention: dropout_rate > 0 but deterministic is None in the call "
                    "and on the module. Pass deterministic=..., or call model.train() / "
                    "model.eval()."
                ),
            )
        else:
            deterministic = True
        dropout_rng = None
        if not deterministic:
            if rngs is None:
                raise ValueError(
                    "MultiHeadAttention: attention dropout is active but no random stream is "
                    "available. Pass rngs=... to the call, construct with keep_rngs=True, or "
                    "call model.eval()."
                )
            dropout_rng = rngs()

        extra: dict[str, Any] = {}
        if is_causal:
            extra["is_causal"] = True
        if input_positions is not None:
            extra["input_positions"] = input_positions
        x = self.attention_fn(
            query,
            key,
            value,
            mask=mask,
            dropout_rng=dropout_rng,
            dropout_rate=self.dropout_rate,
            broadcast_dropout=self.broadcast_dropout,
            deterministic=deterministic,
            dtype=self.dtype,
            precision=self.precision,
            module=self if sow_weights else None,
            **extra,
        )
        return self.out(x, out_sharding=out_sharding)

    def _update_cache(
        self, key: Array, value: Array, mask: Array | None
    ) -> tuple[Array, Array, Array | None]:
        if self.cached_key is None or self.cached_value is None or self.cache_index is None:
            raise ValueError(
                "MultiHeadAttention: decode=True but the autoregressive cache is not "
                "initialized. Call module.init_cache((batch, max_length, in_features)) first, "
                "or nnx.view(model, decode=True, batch_size=..., max_length=...)."
            )
        *batch_dims, max_length, heads, depth = self.cached_key.shape
        expected = (*batch_dims, 1, heads, depth)
        if key.shape != expected:
            raise shape_error(
                self,
                argument="inputs_k projected to (batch..., length, kv_heads, head_dim)",
                expected=expected,
                actual=key.shape,
                fix=(
                    "in decode mode pass one token at a time, with the batch shape given to "
                    "init_cache."
                ),
            )
        index = self.cache_index[...]
        zero = jnp.zeros((), dtype=index.dtype)
        start = (zero,) * len(batch_dims) + (index, zero, zero)
        key = lax.dynamic_update_slice(
            self.cached_key[...], key.astype(self.cached_key.dtype), start
        )
        value = lax.dynamic_update_slice(
            self.cached_value[...], value.astype(self.cached_value.dtype), start
        )
        self.cached_key[...] = key
        self.cached_value[...] = value
        self.cache_index[...] = index + 1
        # The query at position `index` may see cache slots 0..index.
        visible = jnp.arange(max_length) <= index
        visible = jnp.broadcast_to(visible, (*batch_dims, 1, 1, max_length))
        return key, value, combine_masks(mask, visible)

    def init_cache(self, input_shape: tuple[int, ...], dtype: Any = jnp.float32) -> None:
        """Creates an empty decode cache for inputs of ``(batch..., max_length, features)``.

        Examples:
          >>> import jax.numpy as jnp
          >>> from plait import nnx
          >>> mha = nnx.MultiHeadAttention(2, 8, decode=True, rngs=nnx.Rngs(0))
          >>> mha.init_cache((3, 10, 8))
          >>> mha.cached_key.shape
          (3, 10, 2, 4)
          >>> mha(jnp.ones((3, 1, 8))).shape
          (3, 1, 8)
        """
        cache_shape = (*input_shape[:-1], self.num_kv_heads, self.head_dim)
        self.cached_key = Cache(jnp.zeros(cache_shape, dtype))
        self.cached_value = Cache(jnp.zeros(cache_shape, dtype))
        self.cache_index = Cache(jnp.array(0, dtype=jnp.int32))

    def set_view(
        self,
        deterministic: bool | None = None,
        decode: bool | None = None,
        batch_size: int | tuple[int, ...] | None = None,
        max_length: int | None = None,
    ) -> None:
        """Sets the view flags; with ``decode=True``, ``batch_size`` and ``max_length``
        also creates the decode cache. None leaves a setting unchanged."""
        if deterministic is not None:
            self.deterministic = deterministic
        if decode is not None:
            self.decode = decode
        if decode and batch_size is not None and max_length is not None:
            batch = (batch_size,) if isinstance(batch_size, int) else tuple(batch_size)
            self.init_cache((*batch, max_length, self.in_features), self.param_dtype)
