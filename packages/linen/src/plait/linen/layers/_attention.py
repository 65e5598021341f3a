"""Attention: Linen-signature kernel functions and the multi-head attention layers."""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable
from typing import Any, overload

import jax
import jax.numpy as jnp
from jax import lax
from plait.core.nn import attention as _core_attention
from plait.core.nn import initializers
from plait.core.nn.attention import combine_masks

from ._base import Module, compact, merge_param
from ._common import describe
from ._errors import LayerConfigError, LayerShapeError
from ._linear import DenseGeneral, default_kernel_init
from ._normalization import LayerNorm

Array = Any
Dtype = Any


def dot_product_attention_weights(
    query: Array,
    key: Array,
    bias: Array | None = None,
    mask: Array | None = None,
    broadcast_dropout: bool = True,
    dropout_rng: jax.Array | None = None,
    dropout_rate: float = 0.0,
    deterministic: bool = False,
    dtype: Dtype | None = None,
    precision: Any = None,
    module: Module | None = None,
    force_fp32_for_softmax: bool = False,
    einsum_dot_general: Callable[..., Array] | None = None,
    einsum: Callable[..., Array] | None = None,
) -> Array:
    """Attention weights ``softmax(q k^T / sqrt(depth) + bias)`` where ``mask`` holds.

    Args:
      query: ``(batch..., q_length, num_heads, depth)``.
      key: ``(batch..., kv_length, num_heads, depth)``.
      bias: added to the logits, broadcastable to ``(batch..., num_heads, q_length,
        kv_length)``.
      mask: where false, the logit becomes the dtype's most negative value.
      broadcast_dropout: one dropout pattern for all batch and head axes.
      dropout_rng: key for the dropout mask.
      dropout_rate: probability of dropping a weight.
      deterministic: disable dropout.
      dtype: the computation dtype (default: inferred from query and key).
      precision: numerical precision of the einsum.
      module: if given, the weights are sown to its ``intermediates`` collection
        under ``attention_weights``.
      force_fp32_for_softmax: compute the softmax in float32.
      einsum_dot_general: the ``dot_general`` used by the einsum.
      einsum: replaces ``jnp.einsum``.

    Returns:
      ``(batch..., num_heads, q_length, kv_length)``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from plait import linen as nn
      >>> w = nn.dot_product_attention_weights(jnp.ones((3, 2, 4)), jnp.ones((5, 2, 4)))
      >>> w.shape
      (2, 3, 5)
    """
    return _core_attention.dot_product_attention_weights(
        query,
        key,
        bias=bias,
        mask=mask,
        broadcast_dropout=broadcast_dropout,
        dropout_rng=dropout_rng,
        dropout_rate=dropout_rate,
        deterministic=deterministic,
        dtype=dtype,
        precision=precision,
        module=module,
        force_fp32_for_softmax=force_fp32_for_softmax,
        einsum_dot_general=einsum_dot_general,
        einsum=einsum,
    )


def dot_product_attention(
    query: Array,
    key: Array,
    value: Array,
    bias: Array | None = None,
    mask: Array | None = None,
    broadcast_dropout: bool = True,
    dropout_rng: jax.Array | None = None,
    dropout_rate: float = 0.0,
    deterministic: bool = False,
    dtype: Dtype | None = None,
    precision: Any = None,
    module: Module | None = None,
    force_fp32_for_softmax: bool = False,
    einsum_dot_general: Callable[..., Array] | None = None,
    qk_attn_weights_einsum: Callable[..., Array] | None = None,
    attn_weights_value_einsum: Callable[..., Array] | None = None,
) -> Array:
    """Scaled dot-product attention ``softmax(q k^T / sqrt(depth)) v``.

    Args: as :func:`dot_product_attention_weights`, plus ``value`` of shape
    ``(batch..., kv_length, num_heads, v_depth)`` and the two einsum overrides.

    Returns:
      ``(batch..., q_length, num_heads, v_depth)``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from plait import linen as nn
      >>> q = jnp.ones((4, 2, 8)); kv = jnp.ones((6, 2, 8))
      >>> nn.dot_product_attention(q, kv, kv).shape
      (4, 2, 8)
    """
    return _core_attention.dot_product_attention(
        query,
        key,
        value,
        bias=bias,
        mask=mask,
        broadcast_dropout=broadcast_dropout,
        dropout_rng=dropout_rng,
        dropout_rate=dropout_rate,
        deterministic=deterministic,
        dtype=dtype,
        precision=precision,
        module=module,
        force_fp32_for_softmax=force_fp32_for_softmax,
        einsum_dot_general=einsum_dot_general,
        qk_attn_weights_einsum=qk_attn_weights_einsum,
        attn_weights_value_einsum=attn_weights_value_einsum,
    )


class MultiHeadDotProductAttention(Module):
    """Multi-head dot-product attention.

    Projects queries, keys and values with ``DenseGeneral`` layers named ``query``,
    ``key`` and ``value`` (kernels ``(in_features, num_heads, head_dim)``), applies
    ``attention_fn`` and projects back with ``out`` (kernel ``(num_heads, head_dim,
    out_features)``).

    With ``decode=True`` the layer keeps an autoregressive cache in the ``cache``
    collection (``cached_key``, ``cached_value``, ``cache_index``): ``init`` with a
    full-length input sizes the cache; then each ``apply(..., mutable=['cache'])``
    with a single position appends it and attends to every position so far.

    Attributes:
      num_heads: number of heads; ``qkv_features`` must be divisible by it.
      dtype: the dtype of the computation (default: inferred).
      param_dtype: the dtype of the parameters.
      qkv_features: width of the query/key/value projections (default: the
        query's last axis).
      out_features: width of the output (default: the query's last axis).
      broadcast_dropout: one dropout pattern for all batch and head axes.
      dropout_rate: dropout on the attention weights.
      deterministic: disable dropout; may instead be passed to ``__call__``.
      precision: numerical precision of the projections and attention.
      kernel_init: initializer for the projection kernels.
      out_kernel_init: initializer for the output kernel (default: kernel_init).
      bias_init: initializer for the projection biases.
      out_bias_init: initializer for the output bias (default: bias_init).
      use_bias: whether the projections have biases.
      attention_fn: ``dot_product_attention`` or a compatible function.
      decode: keep an autoregressive key/value cache.
      normalize_qk: apply LayerNorm (``query_ln``, ``key_ln``) to queries and keys.
      force_fp32_for_softmax: compute the softmax in float32.
      qkv_dot_general: ``dot_general`` for the q/k/v projections.
      out_dot_general: ``dot_general`` for the output projection.
      qkv_dot_general_cls: factory for ``qkv_dot_general``.
      out_dot_general_cls: factory for ``out_dot_general``.
      qk_attn_weights_einsum_cls: factory for the ``q k^T`` einsum.
      attn_weights_value_einsum_cls: factory for the ``weights v`` einsum.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from plait import linen as nn
      >>> layer = nn.MultiHeadDotProductAttention(num_heads=2, qkv_features=8)
      >>> x = jnp.ones((1, 3, 4))
      >>> variables = layer.init(jax.random.key(0), x)
      >>> layer.apply(variables, x).shape
      (1, 3, 4)
    """

    num_heads: int
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    qkv_features: int | None = None
    out_features: int | None = None
    broadcast_dropout: bool = True
    dropout_rate: float = 0.0
    deterministic: bool | None = None
    precision: Any = None
    kernel_init: Any = default_kernel_init
    out_kernel_init: Any | None = None
    bias_init: Any = initializers.zeros_init()
    out_bias_init: Any | None = None
    use_bias: bool = True
    attention_fn: Callable[..., Array] = dot_product_attention
    decode: bool = False
    normalize_qk: bool = False
    force_fp32_for_softmax: bool = False
    qkv_dot_general: Any = None
    out_dot_general: Any = None
    qkv_dot_general_cls: Any = None
    out_dot_general_cls: Any = None
    qk_attn_weights_einsum_cls: Callable[..., Callable[..., Array]] | None = None
    attn_weights_value_einsum_cls: Callable[..., Callable[..., Array]] | None = None

    @overload
    def __call__(
        self,
        inputs_q: Array,
        inputs_k: Array | None = None,
        inputs_v: Array | None = None,
        *,
        mask: Array | None = None,
        deterministic: bool | None = None,
        dropout_rng: jax.Array | None = None,
        sow_weights: bool = False,
    ): ...

    @overload
    def __call__(
        self,
        inputs_q: Array,
        *,
        inputs_kv: Array | None = None,
        mask: Array | None = None,
        deterministic: bool | None = None,
        dropout_rng: jax.Array | None = None,
        sow_weights: bool = False,
    ): ...

    @compact
    def __call__(
        self,
        inputs_q: Array,
        inputs_k: Array | None = None,
        inputs_v: Array | None = None,
        *,
        inputs_kv: Array | None = None,
        mask: Array | None = None,
        deterministic: bool | None = None,
        dropout_rng: jax.Array | None = None,
        sow_weights: bool = False,
    ):
        """Attends from ``inputs_q`` to ``inputs_k`` / ``inputs_v``.

        Args:
          inputs_q: queries ``(batch..., q_length, features)``.
          inputs_k: keys ``(batch..., kv_length, features)`` (default: inputs_q).
          inputs_v: values (default: inputs_k).
          inputs_kv: deprecated: keys and values at once.
          mask: ``(batch..., num_heads, q_length, kv_length)``, broadcastable; false
            entries are not attended to.
          deterministic: overrides the attribute when the attribute is None.
          dropout_rng: key for attention dropout (default: ``make_rng('dropout')``).
          sow_weights: record the attention weights in ``intermediates``.

        Returns:
          ``(batch..., q_length, out_features)``.
        """
        if inputs_kv is not None:
            if inputs_k is not None or inputs_v is not None:
                raise LayerConfigError(
                    f"{describe(self)}: pass either inputs_kv or inputs_k/inputs_v, not "
                    "both. inputs_kv is deprecated: use inputs_k (and inputs_v)."
                )
            inputs_k = inputs_v = inputs_kv
            warnings.warn(
                "inputs_kv is deprecated; pass inputs_k and inputs_v instead.",
                DeprecationWarning,
                stacklevel=2,
            )
        else:
            if inputs_k is None:
                if inputs_v is not None:
                    raise LayerConfigError(
                        f"{describe(self)}: inputs_k is None but inputs_v is given. To "
                        "use one array as keys and values, pass it as inputs_k alone."
                    )
                inputs_k = inputs_q
            if inputs_v is None:
                inputs_v = inputs_k

        features = self.out_features or inputs_q.shape[-1]
        qkv_features = self.qkv_features or inputs_q.shape[-1]
        if qkv_features % self.num_heads:
            raise LayerConfigError(
                f"{describe(self)}: qkv_features={qkv_features} is not divisible by "
                f"num_heads={self.num_heads}. Choose qkv_features as a multiple of "
                "num_heads."
            )
        head_dim = qkv_features // self.num_heads

        projection = functools.partial(
            DenseGeneral,
            axis=-1,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            features=(self.num_heads, head_dim),
            kernel_init=self.kernel_init,
            bias_init=self.bias_init,
            use_bias=self.use_bias,
            precision=self.precision,
            dot_general=self.qkv_dot_general,
            dot_general_cls=self.qkv_dot_general_cls,
        )
        query = projection(name="query")(inputs_q)
        key = projection(name="key")(inputs_k)
        value = projection(name="value")(inputs_v)

        if self.normalize_qk:
            # QK normalization stabilizes training at high learning rates (ViT-22B).
            query = LayerNorm(
                name="query_ln", use_bias=False, dtype=self.dtype, param_dtype=self.param_dtype
            )(query)
            key = LayerNorm(
                name="key_ln", use_bias=False, dtype=self.dtype, param_dtype=self.param_dtype
            )(key)

        if self.decode:
            key, value, mask = self._update_cache(query, key, value, mask)

        if self.dropout_rate > 0.0:
            # `deterministic` is only required when there is dropout to switch off.
            deterministic = merge_param("deterministic", self.deterministic, deterministic)
            if not deterministic and dropout_rng is None:
                dropout_rng = self.make_rng("dropout")
        else:
            deterministic = True

        kwargs = dict(
            mask=mask,
            dropout_rng=dropout_rng,
            dropout_rate=self.dropout_rate,
            broadcast_dropout=self.broadcast_dropout,
            deterministic=deterministic,
            dtype=self.dtype,
            precision=self.precision,
            force_fp32_for_softmax=self.force_fp32_for_softmax,
            qk_attn_weights_einsum=(
                self.qk_attn_weights_einsum_cls() if self.qk_attn_weights_einsum_cls else None
            ),
            attn_weights_value_einsum=(
                self.attn_weights_value_einsum_cls() if self.attn_weights_value_einsum_cls else None
            ),
        )
        # A custom attention_fn receives only the keywords it declares.
        accepted = inspect.signature(self.attention_fn).parameters
        kwargs = {k: v for k, v in kwargs.items() if k in accepted}
        if sow_weights:
            x = self.attention_fn(query, key, value, **kwargs, module=self)
        else:
            x = self.attention_fn(query, key, value, **kwargs)

        return DenseGeneral(
            features=features,
            axis=(-2, -1),
            kernel_init=self.out_kernel_init or self.kernel_init,
            bias_init=self.out_bias_init or self.bias_init,
            use_bias=self.use_bias,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            precision=self.precision,
            dot_general=self.out_dot_general,
            dot_general_cls=self.out_dot_general_cls,
            name="out",
        )(x)

    def _update_cache(
        self, query: Array, key: Array, value: Array, mask: Array | None
    ) -> tuple[Array, Array, Array | None]:
        """Writes one decoding step into the cache; returns the full keys, values, mask."""
        # The cache exists once `init` has run; its absence means we are sizing it.
        filled = self.has_variable("cache", "cached_key")
        cached_key = self.variable("cache", "cached_key", jnp.zeros, key.shape, key.dtype)
        cached_value = self.variable("cache", "cached_value", jnp.zeros, value.shape, value.dtype)
        cache_index = self.variable("cache", "cache_index", lambda: jnp.array(0, jnp.int32))
        if not filled:
            return key, value, mask
        *batch_dims, max_length, num_heads, head_dim = cached_key.value.shape
        expected = tuple(batch_dims) + (1, num_heads, head_dim)
        if expected != tuple(query.shape):
            raise LayerShapeError(
                f"{describe(self)}: autoregressive decoding feeds one position per "
                f"call, so the projected query should have shape {expected}, but it "
                f"has shape {tuple(query.shape)}. Pass inputs of shape "
                f"{tuple(batch_dims) + (1,)} + (features,), with the batch shape used "
                "to initialize the cache."
            )
        index = cache_index.value
        zero = jnp.array(0, dtype=index.dtype)
        start = (zero,) * len(batch_dims) + (index, zero, zero)
        key = lax.dynamic_update_slice(cached_key.value, key, start)
        value = lax.dynamic_update_slice(cached_value.value, value, start)
        cached_key.value = key
        cached_value.value = value
        cache_index.value = index + 1
        # The new query may attend to the positions written so far, not the zeros after.
        written = jnp.broadcast_to(
            jnp.arange(max_length) <= index, tuple(batch_dims) + (1, 1, max_length)
        )
        return key, value, combine_masks(mask, written)


class MultiHeadAttention(MultiHeadDotProductAttention):
    """Alias of :class:`MultiHeadDotProductAttention` (auto-named
    ``MultiHeadAttention_<n>``, which changes parameter paths and rng derivation).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from plait import linen as nn
      >>> layer = nn.MultiHeadAttention(num_heads=2)
      >>> x = jnp.ones((1, 3, 4))
      >>> layer.apply(layer.init(jax.random.key(0), x), x).shape
      (1, 3, 4)
    """


class SelfAttention(MultiHeadDotProductAttention):
    """Self-attention: :class:`MultiHeadDotProductAttention` with keys = values =
    queries. Deprecated in Flax in favour of calling the parent with one input.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from plait import linen as nn
      >>> layer = nn.SelfAttention(num_heads=2)
      >>> x = jnp.ones((1, 3, 4))
      >>> import warnings
      >>> with warnings.catch_warnings():
      ...   warnings.simplefilter('ignore')
      ...   layer.apply(layer.init(jax.random.key(0), x), x).shape
      (1, 3, 4)
    """

    @compact
    def __call__(
        self,
        inputs_q: Array,
        mask: Array | None = None,
        deterministic: bool | None = None,
        dropout_rng: jax.Array | None = None,
        sow_weights: bool = False,
    ):
        """Attends from ``inputs_q`` to itself."""
        warnings.warn(
            "SelfAttention will be deprecated soon. Use "
            "`MultiHeadDotProductAttention.__call__(inputs_q)` instead.",
            DeprecationWarning,
            stacklevel=2,
        )
        return super().__call__(
            inputs_q,
            mask=mask,
            deterministic=deterministic,
            dropout_rng=dropout_rng,
            sow_weights=sow_weights,
        )
