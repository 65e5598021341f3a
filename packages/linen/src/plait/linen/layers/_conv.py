"""Convolutions: Conv, ConvLocal (unshared weights) and ConvTranspose.

Layout is channels-last: inputs are ``(*batch, *spatial, features)``. Several batch
axes are flattened into one for the convolution and restored afterwards; inputs
with no batch axis get one temporarily.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from plait.core.nn import initializers
from plait.core.nn.dtypes import promote_dtype_args as promote_dtype

from ._base import Module, compact
from ._common import checked_param, describe, prod, require_rank
from ._errors import LayerConfigError
from ._linear import PromoteDtypeFn, default_kernel_init

Array = Any
Dtype = Any
PaddingLike = str | int | Sequence[int | tuple[int, int]]
LaxPadding = str | Sequence[tuple[int, int]]


def canonicalize_padding(padding: PaddingLike, rank: int) -> LaxPadding:
    """Turns a user padding into what ``jax.lax`` accepts.

    A string passes through; an int pads every spatial axis by that amount on both
    sides; a sequence gives one int or ``(low, high)`` pair per spatial axis.

    Examples:
      >>> canonicalize_padding(1, 2)
      [(1, 1), (1, 1)]
      >>> canonicalize_padding([2, (0, 1)], 2)
      [(2, 2), (0, 1)]
    """
    if isinstance(padding, str):
        return padding
    if isinstance(padding, int):
        return [(padding, padding)] * rank
    if isinstance(padding, Sequence) and len(padding) == rank:
        pairs = []
        for p in padding:
            if isinstance(p, int):
                pairs.append((p, p))
            elif isinstance(p, tuple) and len(p) == 2:
                pairs.append(p)
            else:
                break
        if len(pairs) == rank:
            return pairs
    raise LayerConfigError(
        f"Invalid padding {padding!r}: use a string ('SAME', 'VALID', 'CIRCULAR', "
        f"'CAUSAL'), an int, or a sequence of {rank} entries (one per spatial axis), "
        "each an int or a (low, high) pair of ints."
    )


def _conv_dimension_numbers(input_shape: Sequence[int]) -> lax.ConvDimensionNumbers:
    # Inputs NH..C, kernel H..IO, outputs NH..C.
    ndim = len(input_shape)
    lhs = (0, ndim - 1) + tuple(range(1, ndim - 1))
    rhs = (ndim - 1, ndim - 2) + tuple(range(0, ndim - 2))
    return lax.ConvDimensionNumbers(lhs, rhs, lhs)


def _kernel_size_tuple(kernel_size: int | Sequence[int]) -> tuple[int, ...]:
    return (kernel_size,) if isinstance(kernel_size, int) else tuple(kernel_size)


def _broadcast_spatial(x: int | Sequence[int] | None, n: int) -> tuple[int, ...]:
    # None means 1 (older Flax spelled "no stride/dilation" that way).
    if x is None:
        x = 1
    if isinstance(x, int):
        return (x,) * n
    return tuple(x)


def _flatten_batch(inputs: Array, n_spatial: int) -> tuple[Array, tuple[int, ...] | None]:
    n_batch = inputs.ndim - (n_spatial + 1)
    if n_batch == 1:
        return inputs, None
    batch_shape = inputs.shape[:n_batch]
    return jnp.reshape(inputs, (prod(batch_shape),) + inputs.shape[n_batch:]), batch_shape


def _pick_conv(conv_cls: Any, conv_fn: Any) -> Any:
    if conv_cls is not None:
        return conv_cls()
    if conv_fn is not None:
        return conv_fn
    return lax.conv_general_dilated


class _Conv(Module):
    """Convolution over the spatial axes (shared or unshared weights).

    Attributes:
      features: number of output channels.
      kernel_size: int or tuple: the window size per spatial axis.
      strides: int or tuple: the step per spatial axis (default 1).
      padding: 'SAME', 'VALID', 'CIRCULAR' (periodic), 'CAUSAL' (1-D, left padded),
        an int, or one int / ``(low, high)`` pair per spatial axis.
      input_dilation: int or tuple: dilation of the inputs (a transposed conv).
      kernel_dilation: int or tuple: dilation of the kernel (atrous conv).
      feature_group_count: split input channels into this many groups.
      use_bias: whether to add a bias.
      mask: optional array multiplied into the kernel (masked convolution).
      dtype: the dtype of the computation (default: inferred).
      param_dtype: the dtype of the parameters.
      precision: numerical precision of the convolution.
      kernel_init: initializer for the kernel.
      bias_init: initializer for the bias.
      promote_dtype: casts inputs and params to one dtype.
      conv_general_dilated: replaces ``jax.lax.conv_general_dilated``.
      conv_general_dilated_cls: a factory for ``conv_general_dilated``.
    """

    features: int
    kernel_size: int | Sequence[int]
    strides: None | int | Sequence[int] = 1
    padding: PaddingLike = "SAME"
    input_dilation: None | int | Sequence[int] = 1
    kernel_dilation: None | int | Sequence[int] = 1
    feature_group_count: int = 1
    use_bias: bool = True
    mask: Array | None = None
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    precision: Any = None
    kernel_init: Any = default_kernel_init
    bias_init: Any = initializers.zeros_init()
    promote_dtype: PromoteDtypeFn = promote_dtype
    conv_general_dilated: Any = None
    conv_general_dilated_cls: Any = None

    @property
    def shared_weights(self) -> bool:
        """True for an ordinary convolution, False for a locally connected layer."""
        raise NotImplementedError

    @compact
    def __call__(self, inputs: Array) -> Array:
        """Convolves ``inputs`` of shape ``(*batch, *spatial, features)``."""
        kernel_size = _kernel_size_tuple(self.kernel_size)
        n_spatial = len(kernel_size)
        require_rank(
            self,
            inputs,
            n_spatial + 1,
            argument="inputs",
            need=f"a {n_spatial}-D convolution needs at least {n_spatial + 1} axes "
            f"(*batch, {n_spatial} spatial, features)",
            fix="Add the missing axes, e.g. a trailing feature axis with x[..., None].",
        )
        original_shape = inputs.shape
        inputs, batch_shape = _flatten_batch(inputs, n_spatial)

        strides = _broadcast_spatial(self.strides, n_spatial)
        input_dilation = _broadcast_spatial(self.input_dilation, n_spatial)
        kernel_dilation = _broadcast_spatial(self.kernel_dilation, n_spatial)

        padding = canonicalize_padding(self.padding, n_spatial)
        if padding == "CIRCULAR":
            dilated = [(k - 1) * d + 1 for k, d in zip(kernel_size, kernel_dilation, strict=True)]
            pads = [(0, 0)] + [((k - 1) // 2, k // 2) for k in dilated] + [(0, 0)]
            inputs = jnp.pad(inputs, pads, mode="wrap")
            padding = "VALID"
        elif padding == "CAUSAL":
            if n_spatial != 1:
                raise LayerConfigError(
                    f"{describe(self)}: padding='CAUSAL' is only defined for 1-D "
                    f"convolutions, but kernel_size={kernel_size} has {n_spatial} axes."
                )
            left = kernel_dilation[0] * (kernel_size[0] - 1)
            inputs = jnp.pad(inputs, [(0, 0), (left, 0), (0, 0)])
            padding = "VALID"

        dimension_numbers = _conv_dimension_numbers(inputs.shape)
        in_features = inputs.shape[-1]
        hint = "The kernel's input-channel axis must equal the inputs' last axis."

        if self.shared_weights:
            if in_features % self.feature_group_count:
                raise LayerConfigError(
                    f"{describe(self)}: the inputs have {in_features} channels, which "
                    f"feature_group_count={self.feature_group_count} does not divide."
                )
            kernel_shape = kernel_size + (in_features // self.feature_group_count, self.features)
        else:
            if self.feature_group_count != 1:
                raise LayerConfigError(
                    f"{describe(self)}: a locally connected convolution does not support "
                    f"feature_group_count != 1, got {self.feature_group_count}."
                )
            conv = _pick_conv(self.conv_general_dilated_cls, self.conv_general_dilated)
            out_shape = jax.eval_shape(
                lambda lhs, rhs: conv(
                    lhs=lhs,
                    rhs=rhs,
                    window_strides=strides,
                    padding=padding,
                    dimension_numbers=dimension_numbers,
                    lhs_dilation=input_dilation,
                    rhs_dilation=kernel_dilation,
                ),
                inputs,
                jax.ShapeDtypeStruct(kernel_size + (in_features, self.features), inputs.dtype),
            ).shape
            # One kernel per output position, over the flattened receptive field.
            kernel_shape = tuple(out_shape[1:-1]) + (prod(kernel_size) * in_features, self.features)

        if self.mask is not None and tuple(self.mask.shape) != kernel_shape:
            raise LayerConfigError(
                f"{describe(self)}: mask has shape {tuple(self.mask.shape)} but the "
                f"kernel has shape {kernel_shape}; the mask must match the kernel."
            )
        kernel = checked_param(
            self,
            "kernel",
            self.kernel_init,
            kernel_shape,
            self.param_dtype,
            argument="inputs",
            input_shape=original_shape,
            hint=hint,
        )
        if self.mask is not None:
            kernel *= self.mask

        bias = None
        if self.use_bias:
            bias_shape = (self.features,) if self.shared_weights else tuple(out_shape[1:])
            bias = self.param("bias", self.bias_init, bias_shape, self.param_dtype)

        inputs, kernel, bias = self.promote_dtype(inputs, kernel, bias, dtype=self.dtype)
        if self.shared_weights:
            conv = _pick_conv(self.conv_general_dilated_cls, self.conv_general_dilated)
            y = conv(
                inputs,
                kernel,
                strides,
                padding,
                lhs_dilation=input_dilation,
                rhs_dilation=kernel_dilation,
                dimension_numbers=dimension_numbers,
                feature_group_count=self.feature_group_count,
                precision=self.precision,
            )
        else:
            y = lax.conv_general_dilated_local(
                lhs=inputs,
                rhs=kernel,
                window_strides=strides,
                padding=padding,
                filter_shape=kernel_size,
                lhs_dilation=input_dilation,
                rhs_dilation=kernel_dilation,
                dimension_numbers=dimension_numbers,
                precision=self.precision,
            )
        if bias is not None:
            y += jnp.reshape(bias, (1,) * (y.ndim - bias.ndim) + bias.shape)
        if batch_shape is not None:
            y = jnp.reshape(y, batch_shape + y.shape[1:])
        return y


class Conv(_Conv):
    """Convolution wrapping ``jax.lax.conv_general_dilated`` (channels-last).

    The kernel has shape ``kernel_size + (in_features // feature_group_count,
    features)``; the bias ``(features,)``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from plait import linen as nn
      >>> layer = nn.Conv(features=4, kernel_size=(3,), padding='VALID')
      >>> out, variables = layer.init_with_output(jax.random.key(0), jnp.ones((1, 8, 3)))
      >>> jax.tree.map(jnp.shape, variables), out.shape
      ({'params': {'bias': (4,), 'kernel': (3, 3, 4)}}, (1, 6, 4))
    """

    @property
    def shared_weights(self) -> bool:
        return True


class ConvLocal(_Conv):
    """Locally connected layer: a convolution whose weights differ per position.

    The kernel has shape ``out_spatial + (prod(kernel_size) * in_features,
    features)``; the bias ``out_spatial + (features,)``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from plait import linen as nn
      >>> layer = nn.ConvLocal(features=4, kernel_size=(3,), padding='VALID')
      >>> variables = layer.init(jax.random.key(0), jnp.ones((1, 8, 3)))
      >>> jax.tree.map(jnp.shape, variables)
      {'params': {'bias': (6, 4), 'kernel': (6, 9, 4)}}
    """

    @property
    def shared_weights(self) -> bool:
        return False


class ConvTranspose(Module):
    """Transposed convolution wrapping ``jax.lax.conv_transpose`` (channels-last).

    Attributes:
      features: number of output channels.
      kernel_size: int or tuple: the window size per spatial axis.
      strides: tuple: the step per spatial axis (default 1).
      padding: 'SAME', 'VALID', 'CIRCULAR', an int, or per-axis pairs.
      kernel_dilation: tuple: dilation of the kernel.
      use_bias: whether to add a bias.
      mask: optional array multiplied into the kernel.
      dtype: the dtype of the computation (default: inferred).
      param_dtype: the dtype of the parameters.
      precision: numerical precision of the convolution.
      kernel_init: initializer for the kernel.
      bias_init: initializer for the bias.
      transpose_kernel: flip the kernel spatially and swap its in/out axes, giving
        the gradient of ``Conv`` with the same kernel.
      promote_dtype: casts inputs and params to one dtype.
      preferred_element_type: accumulation dtype.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from plait import linen as nn
      >>> layer = nn.ConvTranspose(features=4, kernel_size=(3,), padding='VALID')
      >>> out, variables = layer.init_with_output(jax.random.key(0), jnp.ones((1, 8, 3)))
      >>> out.shape
      (1, 10, 4)
    """

    features: int
    kernel_size: int | Sequence[int]
    strides: Sequence[int] | None = None
    padding: PaddingLike = "SAME"
    kernel_dilation: Sequence[int] | None = None
    use_bias: bool = True
    mask: Array | None = None
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    precision: Any = None
    kernel_init: Any = default_kernel_init
    bias_init: Any = initializers.zeros_init()
    transpose_kernel: bool = False
    promote_dtype: PromoteDtypeFn = promote_dtype
    preferred_element_type: Dtype | None = None

    @compact
    def __call__(self, inputs: Array) -> Array:
        """Applies the transposed convolution to ``(*batch, *spatial, features)``."""
        kernel_size = _kernel_size_tuple(self.kernel_size)
        n_spatial = len(kernel_size)
        require_rank(
            self,
            inputs,
            n_spatial + 1,
            argument="inputs",
            need=f"a {n_spatial}-D transposed convolution needs at least "
            f"{n_spatial + 1} axes (*batch, {n_spatial} spatial, features)",
            fix="Add the missing axes, e.g. a trailing feature axis with x[..., None].",
        )
        original_shape = inputs.shape
        inputs, batch_shape = _flatten_batch(inputs, n_spatial)
        strides = _broadcast_spatial(self.strides, n_spatial)
        kernel_dilation = _broadcast_spatial(self.kernel_dilation, n_spatial)

        in_features = inputs.shape[-1]
        if self.transpose_kernel:
            kernel_shape = kernel_size + (self.features, in_features)
        else:
            kernel_shape = kernel_size + (in_features, self.features)
        if self.mask is not None and tuple(self.mask.shape) != kernel_shape:
            raise LayerConfigError(
                f"{describe(self)}: mask has shape {tuple(self.mask.shape)} but the "
                f"kernel has shape {kernel_shape}; the mask must match the kernel."
            )
        kernel = checked_param(
            self,
            "kernel",
            self.kernel_init,
            kernel_shape,
            self.param_dtype,
            argument="inputs",
            input_shape=original_shape,
            hint="The kernel's input-channel axis must equal the inputs' last axis.",
        )
        if self.mask is not None:
            kernel *= self.mask

        padding = canonicalize_padding(self.padding, n_spatial)
        if padding == "CIRCULAR":
            padding = "VALID"
        bias = (
            self.param("bias", self.bias_init, (self.features,), self.param_dtype)
            if self.use_bias
            else None
        )
        inputs, kernel, bias = self.promote_dtype(inputs, kernel, bias, dtype=self.dtype)
        y = lax.conv_transpose(
            inputs,
            kernel,
            strides,
            padding,
            rhs_dilation=kernel_dilation,
            transpose_kernel=self.transpose_kernel,
            precision=self.precision,
            preferred_element_type=self.preferred_element_type,
        )
        if self.padding == "CIRCULAR":
            y = _wrap_periodically(y, inputs.shape[1:-1], strides, self.transpose_kernel)
        if bias is not None:
            y += jnp.reshape(bias, (1,) * (y.ndim - 1) + (-1,))
        if batch_shape is not None:
            y = jnp.reshape(y, batch_shape + y.shape[1:])
        return y


def _wrap_periodically(
    y: Array, in_spatial: Sequence[int], strides: Sequence[int], transpose_kernel: bool
) -> Array:
    """Folds a VALID transposed-conv output onto periods of ``in_size * stride``.

    The output is zero-padded to a whole number of periods, placed so the original
    data starts on a period boundary (otherwise the result would come out shifted),
    and the periods are summed.
    """
    periods = [n * s for n, s in zip(in_spatial, strides, strict=True)]
    shortfalls = [-(size - p) % (2 * p) for size, p in zip(y.shape[1:-1], periods, strict=True)]
    if transpose_kernel:
        pads = [(d // 2, (d + 1) // 2) for d in shortfalls]
    else:
        pads = [((d + 1) // 2, d // 2) for d in shortfalls]
    y = jnp.pad(y, [(0, 0)] + pads + [(0, 0)])
    for axis in range(1, y.ndim - 1):
        period = periods[axis - 1]
        y = y.reshape(y.shape[:axis] + (-1, period) + y.shape[axis + 1 :]).sum(axis=axis)
    return y
