"""Dense, einsum, convolution and embedding layers (Flax NNX ``nnx.nn.linear``)."""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from plait.core import Rngs
from plait.core.nn import dtypes, initializers

from .._errors import check_feature_axis, shape_error
from .._module import Module
from ._common import as_tuple, canonicalize_axes, init_reshaped, value_or_none
from ._layer_helpers import keep_arguments, new_param, optional_param

Array = jax.Array
Axis = int
Size = int

default_kernel_init = initializers.lecun_normal()
default_bias_init = initializers.zeros_init()
default_embed_init = initializers.variance_scaling(1.0, "fan_in", "normal", out_axis=0)

_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _dot_general_kwargs(preferred_element_type: Any, out_sharding: Any) -> dict[str, Any]:
    # Only pass what is set, so that user-supplied dot_general functions that predate
    # these keywords keep working.
    kwargs: dict[str, Any] = {}
    if preferred_element_type is not None:
        kwargs["preferred_element_type"] = preferred_element_type
    if out_sharding is not None:
        kwargs["out_sharding"] = out_sharding
    return kwargs


def _promote(module: Any, inputs: Array, kernel: Array) -> tuple[Any, Any, Any]:
    """``(inputs, kernel, bias)`` in the layer's computation dtype (bias None if absent)."""
    return module.promote_dtype((inputs, kernel, value_or_none(module.bias)), dtype=module.dtype)


def _drawn_flat(init: Any, flat: tuple[int, ...]) -> Any:
    # Multi-axis parameters are drawn as the matrix ``flat`` and reshaped, so fan-in and
    # fan-out based initializers see the contracted and produced sizes.
    return lambda key, shape, dtype: init_reshaped(init, key, shape, flat, dtype)


def _add_feature_bias(y: Array, bias: Array | None) -> Array:
    """Adds a bias over the last (feature) axis of ``y``, if there is one."""
    if bias is None:
        return y
    return y + jnp.reshape(bias, (1,) * (y.ndim - 1) + (-1,))


# The constructor arguments each layer keeps as attributes, in the order it stores them.
_LINEAR_ARGUMENTS = (
    "in_features out_features use_bias dtype param_dtype precision kernel_init bias_init"
    " dot_general promote_dtype preferred_element_type"
)
_LINEAR_GENERAL_ARGUMENTS = (
    "use_bias dtype param_dtype kernel_init bias_init precision promote_dtype dot_general"
    " dot_general_cls preferred_element_type"
)
_EINSUM_ARGUMENTS = (
    "einsum_str kernel_shape bias_shape dtype param_dtype precision kernel_init bias_init"
    " promote_dtype einsum_op preferred_element_type"
)
_CONV_ARGUMENTS = (
    "in_features out_features kernel_size strides padding input_dilation kernel_dilation"
    " feature_group_count use_bias mask dtype param_dtype precision kernel_init bias_init"
    " conv_general_dilated promote_dtype preferred_element_type"
)
_CONV_TRANSPOSE_ARGUMENTS = (
    "in_features out_features kernel_size strides padding kernel_dilation use_bias mask dtype"
    " param_dtype precision kernel_init bias_init transpose_kernel promote_dtype"
    " preferred_element_type"
)
_EMBED_ARGUMENTS = "num_embeddings features dtype param_dtype embedding_init promote_dtype"


class Linear(Module):
    """A linear transformation ``y = x @ kernel + bias`` over the last axis.

    Args:
      in_features: size of the input's last axis.
      out_features: size of the output's last axis.
      use_bias: add a learned bias.
      dtype: computation dtype (default: promoted from input and params).
      param_dtype: dtype of the parameters.
      precision: ``jax.lax.Precision`` for the matmul.
      kernel_init: initializer of ``kernel`` (shape ``(in_features, out_features)``).
      bias_init: initializer of ``bias`` (shape ``(out_features,)``).
      dot_general: the contraction function (default ``jax.lax.dot_general``).
      promote_dtype: called as ``promote_dtype((x, kernel, bias), dtype=dtype)``.
      preferred_element_type: accumulation dtype passed to ``dot_general``.
      rngs: random streams; ``rngs.params()`` seeds the initializers.
      kernel_metadata, bias_metadata: extra Variable metadata (e.g. ``sharding_names``).

    Examples:
      >>> import jax.numpy as jnp
      >>> from plait import nnx
      >>> layer = nnx.Linear(3, 4, rngs=nnx.Rngs(0))
      >>> layer.kernel.shape, layer.bias.shape
      ((3, 4), (4,))
      >>> layer(jnp.ones((2, 3))).shape
      (2, 4)
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        use_bias: bool = True,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        precision: Any = None,
        kernel_init: Any = default_kernel_init,
        bias_init: Any = default_bias_init,
        dot_general: Any = lax.dot_general,
        promote_dtype: Any = dtypes.promote_dtype,
        preferred_element_type: Any = None,
        rngs: Rngs,
        kernel_metadata: Mapping[str, Any] = _EMPTY,
        bias_metadata: Mapping[str, Any] = _EMPTY,
    ):
        kernel_shape = (in_features, out_features)
        self.kernel = new_param(kernel_init, kernel_metadata, kernel_shape, param_dtype, rngs)
        self.bias = optional_param(
            use_bias, bias_init, bias_metadata, (out_features,), param_dtype, rngs
        )
        keep_arguments(self, locals(), _LINEAR_ARGUMENTS)

    def __call__(self, inputs: Array, out_sharding: Any = None) -> Array:
        """Applies the transformation to the last axis of ``inputs``."""
        check_feature_axis(self, inputs, axis=-1, size=self.in_features, param="in_features")
        inputs, kernel, bias = _promote(self, inputs, self.kernel[...])
        y = self.dot_general(
            inputs,
            kernel,
            (((inputs.ndim - 1,), (0,)), ((), ())),
            precision=self.precision,
            **_dot_general_kwargs(self.preferred_element_type, out_sharding),
        )
        return _add_feature_bias(y, bias)


class LinearGeneral(Module):
    """A linear transformation over several input axes, producing several output axes.

    ``kernel`` has shape ``(*batch_sizes, *in_features, *out_features)``; the input axes
    ``axis`` are contracted with the ``in_features`` axes, the input axes in
    ``batch_axis`` (leading, consecutive from 0) are matched one-to-one with the kernel's
    batch axes. Initializers see the kernel as the matrix ``(prod(batch + in),
    prod(out))``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from plait import nnx
      >>> layer = nnx.LinearGeneral((2, 3), (4, 5), axis=(1, -1), rngs=nnx.Rngs(0))
      >>> layer.kernel.shape, layer.bias.shape
      ((2, 3, 4, 5), (4, 5))
      >>> layer(jnp.ones((16, 2, 3))).shape
      (16, 4, 5)
    """

    def __init__(
        self,
        in_features: Size | Sequence[Size],
        out_features: Size | Sequence[Size],
        *,
        axis: Axis | Sequence[Axis] = -1,
        batch_axis: Mapping[Axis, Size] = MappingProxyType({}),
        use_bias: bool = True,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        kernel_init: Any = default_kernel_init,
        bias_init: Any = default_bias_init,
        precision: Any = None,
        promote_dtype: Any = dtypes.promote_dtype,
        dot_general: Any = None,
        dot_general_cls: Any = None,
        preferred_element_type: Any = None,
        rngs: Rngs,
        kernel_metadata: Mapping[str, Any] = _EMPTY,
        bias_metadata: Mapping[str, Any] = _EMPTY,
    ):
        self.in_features = as_tuple(in_features)
        self.out_features = as_tuple(out_features)
        self.axis = as_tuple(axis)
        self.batch_axis = dict(batch_axis)
        if len(self.in_features) != len(self.axis):
            raise ValueError(
                f"LinearGeneral: in_features {self.in_features} and axis {self.axis} must have "
                "the same length (one contracted input axis per in_features entry)."
            )
        if self.batch_axis and set(self.batch_axis) != set(range(max(self.batch_axis) + 1)):
            raise ValueError(
                f"LinearGeneral: batch_axis keys {sorted(self.batch_axis)} must be the leading "
                "axes 0, 1, ..., n-1 of the input."
            )
        batch_shape = tuple(self.batch_axis.values())
        kernel_shape = (*batch_shape, *self.in_features, *self.out_features)
        contracted = int(np.prod(batch_shape) * np.prod(self.in_features))
        flat_kernel = _drawn_flat(kernel_init, (contracted, int(np.prod(self.out_features))))
        self.kernel = new_param(flat_kernel, kernel_metadata, kernel_shape, param_dtype, rngs)
        bias_shape = (*batch_shape, *self.out_features)
        flat_bias = _drawn_flat(bias_init, (int(np.prod(bias_shape)),))
        self.bias = optional_param(
            use_bias, flat_bias, bias_metadata, bias_shape, param_dtype, rngs
        )
        keep_arguments(self, locals(), _LINEAR_GENERAL_ARGUMENTS)

    def __call__(self, inputs: Array, out_sharding: Any = None) -> Array:
        """Contracts ``inputs`` over ``axis`` with the kernel."""
        ndim = inputs.ndim
        check_feature_axis(self, inputs, axis=self.axis, size=self.in_features, param="in_features")
        axis = canonicalize_axes(ndim, self.axis)
        batch_axis = canonicalize_axes(ndim, tuple(self.batch_axis))
        for ax, size in zip(batch_axis, self.batch_axis.values(), strict=True):
            if inputs.shape[ax] != size:
                raise shape_error(
                    self,
                    argument="inputs",
                    expected=f"size {size} on batch axis {ax}",
                    actual=inputs.shape,
                    fix="match the batch_axis sizes given to the constructor.",
                )
        n_batch = len(batch_axis)
        # Output is (batch axes, remaining input axes, out_features); the bias needs 1s
        # for the remaining input axes so it broadcasts over them.
        bias_lead = tuple(
            inputs.shape[ax] if ax in batch_axis else 1 for ax in range(ndim) if ax not in axis
        )
        inputs, kernel, bias = _promote(self, inputs, self.kernel[...])
        if self.dot_general_cls is not None:
            dot_general = self.dot_general_cls()
        elif self.dot_general is not None:
            dot_general = self.dot_general
        else:
            dot_general = lax.dot_general
        contract = tuple(range(n_batch, n_batch + len(axis)))
        out = dot_general(
            inputs,
            kernel,
            ((axis, contract), (batch_axis, tuple(range(n_batch)))),
            precision=self.precision,
            **_dot_general_kwargs(self.preferred_element_type, out_sharding),
        )
        if bias is not None:
            out = out + jnp.reshape(bias, (*bias_lead, *self.out_features))
        return out


def _expand_ellipsis(spec: str, ndim: int, letters: str) -> str:
    if "..." not in spec:
        return spec
    n = ndim - (len(spec) - 3)
    return spec.replace("...", letters[len(letters) - n :] if n else "")


class Einsum(Module):
    """``y = einsum(einsum_str, x, kernel) + bias`` with a learned kernel (and bias).

    The bias is broadcast along the output axes that do not come from the kernel.

    Examples:
      >>> import jax.numpy as jnp
      >>> from plait import nnx
      >>> layer = nnx.Einsum('nta,hab->nthb', (8, 2, 4), (8, 4), rngs=nnx.Rngs(0))
      >>> layer(jnp.ones((16, 11, 2))).shape
      (16, 11, 8, 4)
    """

    def __init__(
        self,
        einsum_str: str,
        kernel_shape: Sequence[int],
        bias_shape: Sequence[int] | None = None,
        *,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        precision: Any = None,
        kernel_init: Any = default_kernel_init,
        bias_init: Any = default_bias_init,
        promote_dtype: Any = dtypes.promote_dtype,
        einsum_op: Any = jnp.einsum,
        preferred_element_type: Any = None,
        rngs: Rngs,
        kernel_metadata: Mapping[str, Any] = _EMPTY,
        bias_metadata: Mapping[str, Any] = _EMPTY,
    ):
        einsum_str = einsum_str.replace(" ", "")
        self._check_einsum_str(einsum_str)
        kernel_shape = tuple(kernel_shape)
        bias_shape = None if bias_shape is None else tuple(bias_shape)
        self.kernel = new_param(kernel_init, kernel_metadata, kernel_shape, param_dtype, rngs)
        self.bias = optional_param(
            bias_shape is not None, bias_init, bias_metadata, bias_shape, param_dtype, rngs
        )
        keep_arguments(self, locals(), _EINSUM_ARGUMENTS)

    @staticmethod
    def _check_einsum_str(einsum_str: str) -> None:
        if "->" not in einsum_str:
            raise ValueError(
                f"Einsum: einsum_str {einsum_str!r} must be explicit and contain '->', "
                "e.g. 'bi,io->bo'."
            )
        if einsum_str.count(",") != 1:
            raise ValueError(
                f"Einsum: einsum_str {einsum_str!r} must have exactly two operands (the input "
                f"and the kernel), i.e. one ',', but has {einsum_str.count(',')}."
            )

    def _bias_broadcast_shape(self, einsum_str: str, lhs_ndim: int) -> list[int]:
        operands, out = einsum_str.split("->")
        lhs, rhs = operands.split(",")
        used = set(einsum_str)
        free = "".join(c for c in string.ascii_letters if c not in used)
        n_lhs = lhs_ndim - (len(lhs) - 3) if "..." in lhs else 0
        n_rhs = len(self.kernel_shape) - (len(rhs) - 3) if "..." in rhs else 0
        ell = free[: max(n_lhs, n_rhs)]
        rhs_full = _expand_ellipsis(rhs, len(self.kernel_shape), ell)
        out_full = out.replace("...", ell)
        positions = {c: i for i, c in enumerate(rhs_full)}
        return [self.kernel_shape[positions[c]] if c in positions else 1 for c in out_full]

    def __call__(
        self, inputs: Array, einsum_str: str | None = None, out_sharding: Any = None
    ) -> Array:
        """Applies the einsum (``einsum_str`` overrides the constructor's)."""
        einsum_str = (einsum_str if einsum_str is not None else self.einsum_str).replace(" ", "")
        self._check_einsum_str(einsum_str)
        inputs, kernel, bias = _promote(self, inputs, self.kernel[...])
        kwargs = _dot_general_kwargs(self.preferred_element_type, out_sharding)
        try:
            y = self.einsum_op(einsum_str, inputs, kernel, precision=self.precision, **kwargs)
        except ValueError as err:
            raise shape_error(
                self,
                argument="inputs",
                expected=f"a shape compatible with {einsum_str!r} and kernel {self.kernel_shape}",
                actual=inputs.shape,
                fix=f"reshape the input to match the einsum equation ({err}).",
            ) from err
        if bias is not None:
            y = y + jnp.reshape(bias, self._bias_broadcast_shape(einsum_str, inputs.ndim))
        return y


def canonicalize_padding(padding: Any, rank: int) -> Any:
    """Normalizes a convolution ``padding`` argument.

    Strings pass through ('SAME', 'VALID', 'CIRCULAR', 'REFLECT', 'CAUSAL', ...); an int
    means that padding on both sides of every spatial axis; a sequence gives, per axis,
    an int (both sides) or a ``(low, high)`` pair.

    Examples:
      >>> canonicalize_padding(1, 2)
      [(1, 1), (1, 1)]
      >>> canonicalize_padding([(0, 1), 2], 2)
      [(0, 1), (2, 2)]
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
            elif isinstance(p, Sequence) and len(p) == 2:
                pairs.append((int(p[0]), int(p[1])))
            else:
                break
        if len(pairs) == rank:
            return pairs
    raise ValueError(
        f"invalid convolution padding {padding!r}: expected a string ('SAME', 'VALID', "
        f"'CIRCULAR', 'REFLECT', 'CAUSAL'), an int, or a sequence of {rank} entries that are "
        "each an int or a (low, high) pair of ints."
    )


def _conv_dimension_numbers(input_shape: tuple[int, ...]) -> lax.ConvDimensionNumbers:
    """Channels-last input/output, kernel laid out (spatial..., in, out)."""
    ndim = len(input_shape)
    lhs = (0, ndim - 1) + tuple(range(1, ndim - 1))
    rhs = (ndim - 1, ndim - 2) + tuple(range(0, ndim - 2))
    return lax.ConvDimensionNumbers(lhs, rhs, lhs)


def _broadcast_spatial(x: int | Sequence[int] | None, n: int) -> tuple[int, ...]:
    if x is None:
        x = 1
    return (x,) * n if isinstance(x, int) else tuple(x)


class _ConvBase(Module):
    """Shared input handling: flatten batch axes to one and check features/rank."""

    kernel_size: tuple[int, ...]
    in_features: int

    def _flatten_batch(self, inputs: Array) -> tuple[Array, tuple[int, ...] | None]:
        n_spatial = len(self.kernel_size)
        if inputs.ndim < n_spatial + 1:
            raise shape_error(
                self,
                argument="inputs",
                expected=f"(batch..., {', '.join(['spatial'] * n_spatial)}, {self.in_features})",
                actual=inputs.shape,
                fix=(
                    f"a {n_spatial}-d convolution needs at least {n_spatial + 1} axes "
                    "(spatial axes then features, channels-last)."
                ),
            )
        check_feature_axis(self, inputs, axis=-1, size=self.in_features, param="in_features")
        n_batch = inputs.ndim - (n_spatial + 1)
        if n_batch == 1:
            return inputs, None
        batch_shape = inputs.shape[:n_batch]
        flat = inputs.reshape((int(np.prod(batch_shape)),) + inputs.shape[n_batch:])
        return flat, batch_shape

    @staticmethod
    def _restore_batch(y: Array, batch_shape: tuple[int, ...] | None) -> Array:
        return y if batch_shape is None else y.reshape(batch_shape + y.shape[1:])

    def _masked_kernel(self) -> Array:
        kernel = self.kernel[...]
        if self.mask is not None:
            if tuple(self.mask.shape) != tuple(self.kernel_shape):
                raise ValueError(
                    f"{type(self).__name__}: mask shape {tuple(self.mask.shape)} must equal the "
                    f"kernel shape {tuple(self.kernel_shape)}."
                )
            kernel = kernel * self.mask
        return kernel


class Conv(_ConvBase):
    """N-d convolution over channels-last inputs ``(batch..., spatial..., in_features)``.

    ``kernel`` has shape ``(*kernel_size, in_features // feature_group_count,
    out_features)``. Padding may be 'SAME', 'VALID', 'CIRCULAR' (periodic), 'REFLECT',
    'CAUSAL' (1-d, left padding only), an int, or per-axis ints / ``(low, high)`` pairs.
    Inputs with no batch axis, or several, are accepted.

    Examples:
      >>> import jax.numpy as jnp
      >>> from plait import nnx
      >>> conv = nnx.Conv(3, 4, kernel_size=(3,), padding='VALID', rngs=nnx.Rngs(0))
      >>> conv.kernel.shape, conv(jnp.ones((1, 8, 3))).shape
      ((3, 3, 4), (1, 6, 4))
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int | Sequence[int],
        strides: None | int | Sequence[int] = 1,
        *,
        padding: Any = "SAME",
        input_dilation: None | int | Sequence[int] = 1,
        kernel_dilation: None | int | Sequence[int] = 1,
        feature_group_count: int = 1,
        use_bias: bool = True,
        mask: Array | None = None,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        precision: Any = None,
        kernel_init: Any = default_kernel_init,
        bias_init: Any = default_bias_init,
        conv_general_dilated: Any = lax.conv_general_dilated,
        promote_dtype: Any = dtypes.promote_dtype,
        preferred_element_type: Any = None,
        rngs: Rngs,
        kernel_metadata: Mapping[str, Any] = _EMPTY,
        bias_metadata: Mapping[str, Any] = _EMPTY,
    ):
        kernel_size = as_tuple(kernel_size)
        if in_features % feature_group_count != 0:
            raise ValueError(
                f"Conv: in_features={in_features} must be divisible by "
                f"feature_group_count={feature_group_count}."
            )
        self.kernel_shape = kernel_size + (in_features // feature_group_count, out_features)
        self.kernel = new_param(kernel_init, kernel_metadata, self.kernel_shape, param_dtype, rngs)
        self.bias = optional_param(
            use_bias, bias_init, bias_metadata, (out_features,), param_dtype, rngs
        )
        keep_arguments(self, locals(), _CONV_ARGUMENTS)

    def __call__(self, inputs: Array, out_sharding: Any = None) -> Array:
        """Convolves ``inputs`` (channels-last); ``out_sharding`` is passed to the conv."""
        inputs, batch_shape = self._flatten_batch(inputs)
        n = len(self.kernel_size)
        strides = _broadcast_spatial(self.strides, n)
        input_dilation = _broadcast_spatial(self.input_dilation, n)
        kernel_dilation = _broadcast_spatial(self.kernel_dilation, n)

        padding = canonicalize_padding(self.padding, n)
        if padding in ("CIRCULAR", "REFLECT"):
            dilated = [
                (k - 1) * d + 1 for k, d in zip(self.kernel_size, kernel_dilation, strict=True)
            ]
            pads = [(0, 0)] + [((k - 1) // 2, k // 2) for k in dilated] + [(0, 0)]
            inputs = jnp.pad(inputs, pads, mode="wrap" if padding == "CIRCULAR" else "reflect")
            padding = "VALID"
        elif padding == "CAUSAL":
            if n != 1:
                raise ValueError("Conv: padding='CAUSAL' is only defined for 1-d convolutions.")
            left = kernel_dilation[0] * (self.kernel_size[0] - 1)
            inputs = jnp.pad(inputs, [(0, 0), (left, 0), (0, 0)])
            padding = "VALID"

        inputs, kernel, bias = _promote(self, inputs, self._masked_kernel())
        kwargs = _dot_general_kwargs(self.preferred_element_type, out_sharding)
        y = self.conv_general_dilated(
            inputs,
            kernel,
            strides,
            padding,
            lhs_dilation=input_dilation,
            rhs_dilation=kernel_dilation,
            dimension_numbers=_conv_dimension_numbers(inputs.shape),
            feature_group_count=self.feature_group_count,
            precision=self.precision,
            **kwargs,
        )
        return self._restore_batch(_add_feature_bias(y, bias), batch_shape)


class ConvTranspose(_ConvBase):
    """N-d transposed convolution (``jax.lax.conv_transpose``), channels-last.

    ``kernel`` has shape ``(*kernel_size, in_features, out_features)``, or
    ``(*kernel_size, out_features, in_features)`` with ``transpose_kernel=True``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from plait import nnx
      >>> layer = nnx.ConvTranspose(3, 4, kernel_size=(3,), padding='VALID', rngs=nnx.Rngs(0))
      >>> layer(jnp.ones((1, 8, 3))).shape
      (1, 10, 4)
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int | Sequence[int],
        strides: int | Sequence[int] | None = None,
        *,
        padding: Any = "SAME",
        kernel_dilation: int | Sequence[int] | None = None,
        use_bias: bool = True,
        mask: Array | None = None,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        precision: Any = None,
        kernel_init: Any = default_kernel_init,
        bias_init: Any = default_bias_init,
        transpose_kernel: bool = False,
        promote_dtype: Any = dtypes.promote_dtype,
        preferred_element_type: Any = None,
        rngs: Rngs,
        kernel_metadata: Mapping[str, Any] = _EMPTY,
        bias_metadata: Mapping[str, Any] = _EMPTY,
    ):
        kernel_size = as_tuple(kernel_size)
        if transpose_kernel:
            self.kernel_shape = kernel_size + (out_features, in_features)
        else:
            self.kernel_shape = kernel_size + (in_features, out_features)
        self.kernel = new_param(kernel_init, kernel_metadata, self.kernel_shape, param_dtype, rngs)
        self.bias = optional_param(
            use_bias, bias_init, bias_metadata, (out_features,), param_dtype, rngs
        )
        keep_arguments(self, locals(), _CONV_TRANSPOSE_ARGUMENTS)

    def __call__(self, inputs: Array) -> Array:
        """Applies the transposed convolution (channels-last)."""
        inputs, batch_shape = self._flatten_batch(inputs)
        n = len(self.kernel_size)
        strides = _broadcast_spatial(self.strides, n)
        kernel_dilation = _broadcast_spatial(self.kernel_dilation, n)
        padding = canonicalize_padding(self.padding, n)
        circular = padding == "CIRCULAR"
        if circular:
            padding = "VALID"
        inputs, kernel, bias = _promote(self, inputs, self._masked_kernel())
        # lax.conv_transpose takes no out_sharding.
        kwargs = _dot_general_kwargs(self.preferred_element_type, None)
        y = lax.conv_transpose(
            inputs,
            kernel,
            strides,
            padding,
            rhs_dilation=kernel_dilation,
            transpose_kernel=self.transpose_kernel,
            precision=self.precision,
            **kwargs,
        )
        if circular:
            y = self._wrap_circular(y, inputs.shape[1:-1], strides)
        return self._restore_batch(_add_feature_bias(y, bias), batch_shape)

    def _wrap_circular(
        self, y: Array, in_spatial: tuple[int, ...], strides: tuple[int, ...]
    ) -> Array:
        # Periodic output: each spatial axis has period in_size * stride. Pad the VALID
        # result to a whole number of periods (placing the input's origin on a period
        # boundary), then fold the periods onto each other by summing.
        periods = [size * s for size, s in zip(in_spatial, strides, strict=True)]
        diffs = [-(ysize - p) % (2 * p) for ysize, p in zip(y.shape[1:-1], periods, strict=True)]
        if self.transpose_kernel:
            pads = [(d // 2, (d + 1) // 2) for d in diffs]
        else:
            pads = [((d + 1) // 2, d // 2) for d in diffs]
        y = jnp.pad(y, [(0, 0)] + pads + [(0, 0)])
        for axis, period in enumerate(periods, start=1):
            y = y.reshape(y.shape[:axis] + (-1, period) + y.shape[axis + 1 :]).sum(axis=axis)
        return y


class Embed(Module):
    """Embedding table ``(num_embeddings, features)`` looked up by integer ids.

    ``attend(query)`` computes ``query @ embedding.T``, the usual tied output layer.
    Ids outside ``[-num_embeddings, num_embeddings)`` give NaN rows (``jnp.take``'s fill
    mode) rather than silently clamping.

    Examples:
      >>> import jax.numpy as jnp
      >>> from plait import nnx
      >>> embed = nnx.Embed(num_embeddings=5, features=3, rngs=nnx.Rngs(0))
      >>> embed(jnp.array([[0, 1], [4, 2]])).shape
      (2, 2, 3)
      >>> embed.attend(jnp.ones((2, 3))).shape
      (2, 5)
    """

    def __init__(
        self,
        num_embeddings: int,
        features: int,
        *,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        embedding_init: Any = default_embed_init,
        promote_dtype: Any = dtypes.promote_dtype,
        rngs: Rngs,
        embedding_metadata: Mapping[str, Any] = _EMPTY,
    ):
        self.embedding = new_param(
            embedding_init, embedding_metadata, (num_embeddings, features), param_dtype, rngs
        )
        # Without a dtype, lookups come out in the table's own dtype.
        dtype = dtype or self.embedding[...].dtype
        keep_arguments(self, locals(), _EMBED_ARGUMENTS)

    def __call__(self, inputs: Array, out_sharding: Any = None) -> Array:
        """Looks up the embedding of each id; output shape ``inputs.shape + (features,)``."""
        if not jnp.issubdtype(inputs.dtype, jnp.integer):
            raise ValueError(
                f"{type(self).__name__} received inputs of dtype {inputs.dtype}, but ids must be "
                "integers. Fix: cast the ids, e.g. ids.astype(jnp.int32)."
            )
        (embedding,) = self.promote_dtype((self.embedding[...],), dtype=self.dtype, inexact=False)
        if self.num_embeddings == 1:
            return jnp.broadcast_to(embedding, inputs.shape + (self.features,))
        if out_sharding is not None:
            return embedding.at[inputs].get(out_sharding=out_sharding, mode="fill")
        return jnp.take(embedding, inputs, axis=0)

    def attend(self, query: Array, out_sharding: Any = None) -> Array:
        """Inner products of ``query`` (last axis ``features``) with every embedding."""
        check_feature_axis(
            self, query, axis=-1, size=self.features, param="features", argument="query"
        )
        query, embedding = self.promote_dtype((query, self.embedding[...]), dtype=self.dtype)
        if out_sharding is not None:
            return jnp.einsum("...f,nf->...n", query, embedding, out_sharding=out_sharding)
        return jnp.dot(query, embedding.T)
