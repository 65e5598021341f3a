"""Linear layers: Dense, DenseGeneral, Einsum and Embed."""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Any, Protocol

import jax
import jax.numpy as jnp
from jax import lax
from plait.core.nn import initializers
from plait.core.nn.dtypes import promote_dtype_args as promote_dtype

from ._base import Module, compact, merge_param
from ._common import as_tuple, checked_param, describe, prod
from ._errors import LayerConfigError, LayerShapeError

Array = Any
Dtype = Any
Initializer = initializers.Initializer

#: Dense-style kernels default to LeCun-normal (variance 1 / fan_in).
default_kernel_init = initializers.lecun_normal()
#: Embedding tables default to unit-variance normal rows (fan_in taken over features).
default_embed_init = initializers.variance_scaling(1.0, "fan_in", "normal", out_axis=0)


class PromoteDtypeFn(Protocol):
    """Signature of the ``promote_dtype`` attribute of the linear and conv layers."""

    def __call__(
        self, *args: jax.Array | None, dtype: Any = None, inexact: bool = True
    ) -> list[jax.Array | None]: ...


def _pick_dot_general(dot_general_cls: Any, dot_general: Any) -> Any:
    # The `_cls` form wins so quantization libraries can inject a stateful op.
    if dot_general_cls is not None:
        return dot_general_cls()
    if dot_general is not None:
        return dot_general
    return lax.dot_general


def _reshape_boxed(value: Any, shape: tuple[int, ...]) -> Any:
    # Initializers wrapped with partitioning metadata return a box; reshape inside it.
    if hasattr(value, "replace_boxed") and hasattr(value, "unbox"):
        inner = value.value if hasattr(value, "value") else value.unbox()
        return value.replace_boxed(jnp.reshape(inner, shape))
    return jnp.reshape(value, shape)


class Dense(Module):
    """A linear transformation applied over the last dimension of the input.

    ``y = inputs @ kernel + bias`` with ``kernel`` of shape ``(inputs.shape[-1],
    features)`` and ``bias`` of shape ``(features,)``.

    Attributes:
      features: the number of output features.
      use_bias: whether to add a bias to the output.
      dtype: the dtype of the computation (default: inferred from inputs and params).
      param_dtype: the dtype of the parameters.
      precision: numerical precision of the matmul (see ``jax.lax.Precision``).
      kernel_init: initializer for the kernel.
      bias_init: initializer for the bias.
      promote_dtype: casts inputs and params to one dtype before the matmul.
      dot_general: replaces ``jax.lax.dot_general``.
      dot_general_cls: a factory for ``dot_general`` (called once per call).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from plait import linen as nn
      >>> layer = nn.Dense(features=3)
      >>> params = layer.init(jax.random.key(0), jnp.ones((2, 4)))
      >>> jax.tree.map(jnp.shape, params)
      {'params': {'bias': (3,), 'kernel': (4, 3)}}
    """

    features: int
    use_bias: bool = True
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    precision: Any = None
    kernel_init: Initializer = default_kernel_init
    bias_init: Initializer = initializers.zeros_init()
    promote_dtype: PromoteDtypeFn = promote_dtype
    dot_general: Any = None
    dot_general_cls: Any = None

    @compact
    def __call__(self, inputs: Array) -> Array:
        """Applies the linear transformation to ``inputs`` along its last axis."""
        in_features = jnp.shape(inputs)[-1]
        kernel = checked_param(
            self,
            "kernel",
            self.kernel_init,
            (in_features, self.features),
            self.param_dtype,
            argument="inputs",
            input_shape=jnp.shape(inputs),
            hint="Dense contracts the last axis of the inputs with the first axis of the kernel.",
        )
        bias = (
            self.param("bias", self.bias_init, (self.features,), self.param_dtype)
            if self.use_bias
            else None
        )
        inputs, kernel, bias = self.promote_dtype(inputs, kernel, bias, dtype=self.dtype)
        dot_general = _pick_dot_general(self.dot_general_cls, self.dot_general)
        y = dot_general(
            inputs,
            kernel,
            (((inputs.ndim - 1,), (0,)), ((), ())),
            precision=self.precision,
        )
        if bias is not None:
            y += jnp.reshape(bias, (1,) * (y.ndim - 1) + (-1,))
        return y


class DenseGeneral(Module):
    """A linear transformation over several input axes, to several output axes.

    The kernel has shape ``batch_shape + contracted_shape + features``; its
    initializer sees the flattened 2-D shape ``(prod(batch)*prod(contracted),
    prod(features))`` so that fan-in based initializers count every contracted axis.

    Attributes:
      features: int or tuple with the output feature shape.
      axis: int or tuple of the input axes to contract.
      batch_dims: leading input axes treated as independent batches (each gets its
        own kernel); they must be ``0, 1, ..., n-1``.
      use_bias: whether to add a bias.
      dtype: the dtype of the computation (default: inferred).
      param_dtype: the dtype of the parameters.
      kernel_init: initializer for the kernel.
      bias_init: initializer for the bias.
      precision: numerical precision of the contraction.
      promote_dtype: casts inputs and params to one dtype.
      dot_general: replaces ``jax.lax.dot_general``.
      dot_general_cls: a factory for ``dot_general``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from plait import linen as nn
      >>> layer = nn.DenseGeneral(features=(4, 5), axis=(-2, -1))
      >>> params = layer.init(jax.random.key(0), jnp.ones((2, 3, 6)))
      >>> jax.tree.map(jnp.shape, params)
      {'params': {'bias': (4, 5), 'kernel': (3, 6, 4, 5)}}
    """

    features: int | Sequence[int]
    axis: int | Sequence[int] = -1
    batch_dims: Sequence[int] = ()
    use_bias: bool = True
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    kernel_init: Initializer = default_kernel_init
    bias_init: Initializer = initializers.zeros_init()
    precision: Any = None
    promote_dtype: PromoteDtypeFn = promote_dtype
    dot_general: Any = None
    dot_general_cls: Any = None

    @compact
    def __call__(self, inputs: Array) -> Array:
        """Contracts ``inputs`` over ``axis`` with the kernel."""
        features = as_tuple(self.features)
        batch_dims = as_tuple(self.batch_dims)
        ndim = inputs.ndim
        if batch_dims and set(batch_dims) != set(range(max(batch_dims) + 1)):
            raise LayerConfigError(
                f"{describe(self)}: batch_dims {batch_dims} must be the consecutive "
                "leading axes 0, 1, ..., n-1. Move the batch axes to the front of the "
                "inputs (jnp.moveaxis) and list them from 0."
            )
        axis = tuple(sorted(a % ndim for a in as_tuple(self.axis)))
        batch_dims = tuple(sorted(b % ndim for b in batch_dims))
        if set(axis) & set(batch_dims):
            raise LayerConfigError(
                f"{describe(self)}: axis {axis} and batch_dims {batch_dims} overlap; "
                "an input axis is either contracted or a batch axis, not both."
            )
        n_batch, n_axis, n_features = len(batch_dims), len(axis), len(features)

        def kernel_init_flat(key, shape, dtype=jnp.float32):
            flat = (
                prod(shape[:n_batch]) * prod(shape[n_batch : n_batch + n_axis]),
                prod(shape[-n_features:]),
            )
            return _reshape_boxed(self.kernel_init(key, flat, dtype), tuple(shape))

        def bias_init_flat(key, shape, dtype=jnp.float32):
            flat = (prod(shape[:n_batch]) * prod(shape[-n_features:]),)
            return _reshape_boxed(self.bias_init(key, flat, dtype), tuple(shape))

        batch_shape = tuple(inputs.shape[a] for a in batch_dims)
        contracted_shape = tuple(inputs.shape[a] for a in axis)
        kernel = checked_param(
            self,
            "kernel",
            kernel_init_flat,
            batch_shape + contracted_shape + features,
            self.param_dtype,
            argument="inputs",
            input_shape=inputs.shape,
            hint=f"DenseGeneral contracts input axes {axis} (and batches over {batch_dims}).",
        )
        bias = (
            self.param("bias", bias_init_flat, batch_shape + features, self.param_dtype)
            if self.use_bias
            else None
        )
        inputs, kernel, bias = self.promote_dtype(inputs, kernel, bias, dtype=self.dtype)
        dot_general = _pick_dot_general(self.dot_general_cls, self.dot_general)
        contract_in_kernel = tuple(range(n_batch, n_batch + n_axis))
        batch_in_kernel = tuple(range(n_batch))
        out = dot_general(
            inputs,
            kernel,
            ((axis, contract_in_kernel), (batch_dims, batch_in_kernel)),
            precision=self.precision,
        )
        if bias is not None:
            # Output axes: batch axes, then free input axes, then features; the bias
            # varies along batch axes and features and broadcasts over the rest.
            kept = [a for a in range(ndim) if a not in axis]
            broadcast_shape = tuple(inputs.shape[a] if a in batch_dims else 1 for a in kept)
            out += jnp.reshape(bias, broadcast_shape + features)
        return out


def _einsum_labels(einsum_str: str, lhs_ndim: int, rhs_ndim: int) -> tuple[str, str, str]:
    """Spells out '...' in a two-operand einsum with concrete letters."""
    operands, out = einsum_str.split("->")
    lhs, rhs = operands.split(",")
    unused = [c for c in string.ascii_letters if c not in einsum_str]

    def ellipsis_len(spec: str, ndim: int) -> int:
        return ndim - (len(spec) - 3) if "..." in spec else 0

    n_ell = max(ellipsis_len(lhs, lhs_ndim), ellipsis_len(rhs, rhs_ndim), 0)
    ell = "".join(unused[:n_ell])

    def expand(spec: str, ndim: int) -> str:
        if "..." not in spec:
            return spec
        k = ellipsis_len(spec, ndim)
        return spec.replace("...", ell[n_ell - k :] if k else "")

    return expand(lhs, lhs_ndim), expand(rhs, rhs_ndim), expand(out, n_ell + len(out))


class Einsum(Module):
    """An einsum of the input with a learned kernel of a given shape, plus a bias.

    The bias covers every output axis that the kernel carries (and broadcasts over
    the others).

    Attributes:
      shape: the kernel shape.
      einsum_str: the equation ``'<inputs>,<kernel>-><output>'``; may instead be
        passed to ``__call__``.
      use_bias: whether to add a bias.
      dtype: the dtype of the computation (default: inferred).
      param_dtype: the dtype of the parameters.
      precision: numerical precision of the einsum.
      kernel_init: initializer for the kernel.
      bias_init: initializer for the bias.
      promote_dtype: casts inputs and params to one dtype.
      preferred_element_type: accumulation dtype passed to ``jnp.einsum``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from plait import linen as nn
      >>> layer = nn.Einsum((5, 6, 7), 'abc,cde->abde')
      >>> params = layer.init(jax.random.key(0), jnp.ones((3, 4, 5)))
      >>> jax.tree.map(jnp.shape, params)
      {'params': {'bias': (6, 7), 'kernel': (5, 6, 7)}}
    """

    shape: Sequence[int]
    einsum_str: str | None = None
    use_bias: bool = True
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    precision: Any = None
    kernel_init: Initializer = default_kernel_init
    bias_init: Initializer = initializers.zeros_init()
    promote_dtype: PromoteDtypeFn = promote_dtype
    preferred_element_type: Dtype | None = None

    @compact
    def __call__(self, inputs: Array, einsum_str: str | None = None) -> Array:
        """Computes ``einsum(einsum_str, inputs, kernel) + bias``."""
        einsum_str = merge_param("einsum_str", self.einsum_str, einsum_str)
        einsum_str = einsum_str.replace(" ", "")
        if "->" not in einsum_str:
            raise LayerConfigError(
                f"{describe(self)}: einsum_str {einsum_str!r} must be explicit and "
                "include '->', e.g. 'bd,df->bf'."
            )
        if einsum_str.count(",") != 1:
            raise LayerConfigError(
                f"{describe(self)}: einsum_str {einsum_str!r} must have exactly two "
                f"operands (one comma), got {einsum_str.count(',') + 1}."
            )
        kernel_shape = tuple(self.shape)
        lhs, rhs, out = _einsum_labels(einsum_str, inputs.ndim, len(kernel_shape))
        if len(rhs) != len(kernel_shape) or len(lhs) != inputs.ndim:
            raise LayerConfigError(
                f"{describe(self)}: einsum_str {einsum_str!r} names {len(lhs)} input "
                f"axes and {len(rhs)} kernel axes, but the inputs have shape "
                f"{inputs.shape} and the kernel shape is {kernel_shape}. Make the "
                "equation's operands match those ranks."
            )
        for i, label in enumerate(lhs):
            if label in rhs and kernel_shape[rhs.index(label)] != inputs.shape[i]:
                raise LayerShapeError(
                    f"{describe(self)}: axis {i} of the inputs (label {label!r}) has "
                    f"size {inputs.shape[i]}, but the kernel shape {kernel_shape} gives "
                    f"label {label!r} size {kernel_shape[rhs.index(label)]}. Pass "
                    f"inputs with that size on axis {i}, or change `shape`."
                )
        kernel = self.param("kernel", self.kernel_init, kernel_shape, self.param_dtype)
        bias = None
        if self.use_bias:
            bias_shape = tuple(kernel_shape[rhs.index(c)] for c in out if c in rhs)
            broadcast_shape = tuple(kernel_shape[rhs.index(c)] if c in rhs else 1 for c in out)
            bias = self.param("bias", self.bias_init, bias_shape, self.param_dtype)
        inputs, kernel, bias = self.promote_dtype(inputs, kernel, bias, dtype=self.dtype)
        y = jnp.einsum(
            einsum_str,
            inputs,
            kernel,
            precision=self.precision,
            preferred_element_type=self.preferred_element_type,
        )
        if bias is not None:
            y += jnp.reshape(bias, broadcast_shape)
        return y


class Embed(Module):
    """A lookup table from integers in ``[0, num_embeddings)`` to feature vectors.

    The table is the parameter ``embedding`` of shape ``(num_embeddings, features)``.
    ``attend`` computes logits against every row (for tied input/output embeddings).

    Attributes:
      num_embeddings: the number of rows (vocabulary size).
      features: the width of each row.
      dtype: the dtype of the returned vectors (default: the table's dtype).
      param_dtype: the dtype of the table.
      embedding_init: initializer for the table.
      promote_dtype: casts the table (and queries) to the computation dtype.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from plait import linen as nn
      >>> layer = nn.Embed(num_embeddings=5, features=3)
      >>> ids = jnp.array([[0, 4]])
      >>> variables = layer.init(jax.random.key(0), ids)
      >>> layer.apply(variables, ids).shape
      (1, 2, 3)
      >>> layer.apply(variables, jnp.ones((1, 3)), method=layer.attend).shape
      (1, 5)
    """

    num_embeddings: int
    features: int
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    embedding_init: Initializer = default_embed_init
    promote_dtype: PromoteDtypeFn = promote_dtype

    def setup(self):
        self.embedding = self.param(
            "embedding",
            self.embedding_init,
            (self.num_embeddings, self.features),
            self.param_dtype,
        )

    def __call__(self, inputs: Array) -> Array:
        """Looks up the rows ``inputs`` (any integer array); appends a feature axis."""
        if not jnp.issubdtype(jnp.asarray(inputs).dtype, jnp.integer):
            raise LayerShapeError(
                f"{describe(self)}: inputs must be an integer or unsigned integer array "
                f"of ids, got dtype {jnp.asarray(inputs).dtype}. Cast token ids with "
                "`.astype(jnp.int32)`; to project vectors onto the table, use "
                "`attend` instead."
            )
        (embedding,) = self.promote_dtype(self.embedding, dtype=self.dtype, inexact=False)
        if self.num_embeddings == 1:
            # A single row: id 0 maps to it, anything else is out of range (nan).
            hit = jnp.broadcast_to(inputs[..., None], inputs.shape + (self.features,)) == 0
            return jnp.where(hit, embedding, jnp.nan)
        return jnp.take(embedding, inputs, axis=0)

    def attend(self, query: Array) -> Array:
        """Inner products of ``query`` (last axis ``features``) with every row."""
        if jnp.shape(query)[-1] != self.features:
            raise LayerShapeError(
                f"{describe(self)}: attend needs a query whose last axis is features="
                f"{self.features}, got query of shape {jnp.shape(query)}. Project the "
                f"query to {self.features} features first (e.g. with nn.Dense)."
            )
        query, embedding = self.promote_dtype(query, self.embedding, dtype=self.dtype)
        return jnp.dot(query, embedding.T)
