"""FP8 ``dot_general`` / ``einsum`` modules with delayed scaling (Flax's fp8 ops).

Pass one as ``dot_general_cls`` of ``Dense`` / ``DenseGeneral`` (or as an ``*_einsum_cls``
of ``MultiHeadDotProductAttention``): it then owns six variables in the collection
``OVERWRITE_WITH_GRADIENT`` (``'_overwrite_with_gradient'``) — a scale and an amax
history for the input, the kernel and the output gradient.

Training with them: differentiate the loss with respect to *all* variables
(``{'params': ..., '_overwrite_with_gradient': ...}``). The gradient of the fp8 state is
its new value, not a derivative, so it must replace the old value instead of going
through the optimizer. ``plait.linen.training.train_state.TrainState`` does this (as
Flax's does): when ``params`` holds the collection, ``create`` builds the optax state for
``params['params']`` only, and ``apply_gradients`` runs optax on ``grads['params']`` and
stores ``grads['_overwrite_with_gradient']`` as is. Without ``TrainState``, do the same by
hand: ``optax`` on the ``'params'`` part, assignment for the fp8 part. A training step
whose forward pass does not call an fp8 op gives its state a zero "gradient"; skip the
overwrite for such steps.
"""

from __future__ import annotations

import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._base import Module
from ._common import describe
from ._errors import LayerConfigError
from ._fp8_dot import _GRADIENT_FP8, dot_general_with_precision, fp8_scaled_dot_general
from ._fp8_quant import in_qdq, out_qdq

DType = Any

#: The collection whose "gradients" are new values that overwrite the old ones.
OVERWRITE_WITH_GRADIENT = "_overwrite_with_gradient"

_OPERAND_NAMES = ("lhs", "rhs", "dimension_numbers")
# Call keywords that `dot_general` callers (Dense, DenseGeneral, einsum) pass and the fp8
# ops deliberately ignore: they pick their own precisions and output dtype.
_IGNORED_KEYWORDS = ("precision", "preferred_element_type")

_BAD_DOT_GENERAL_CALL: str = (
    "{where}: called like `dot_general(lhs, rhs, dimension_numbers, precision=..., "
    "preferred_element_type=...)` is expected, but {problem}. Fix: pass exactly the "
    "two operands and the dimension numbers (as Dense and DenseGeneral do)."
)

_MISMATCHED_FP8_PAIR: str = (
    "{where}: e4m3_dtype={e4m3} goes with e5m2_dtype={expected} (the gradient format of "
    "the same fp8 family), but e5m2_dtype={e5m2}. Fix: use float8_e4m3fn with "
    "float8_e5m2, or float8_e4m3fnuz with float8_e5m2fnuz."
)

_DEPRECATED: str = (
    "{name} (fp8 by quantize-dequantize around a dot_general) is deprecated in Flax and "
    "kept for compatibility; use Fp8DirectDotGeneralOp, which multiplies fp8 operands "
    "directly (e4m3_dtype=jnp.float8_e4m3fnuz, e5m2_dtype=jnp.float8_e5m2fnuz for the "
    "fnuz formats)."
)


class Fp8DotGeneralBase(Module):
    """The fp8 delayed-scaling state shared by the fp8 ops.

    ``setup`` declares, in the collection ``'_overwrite_with_gradient'``,
    ``input_scale``, ``kernel_scale`` and ``output_grad_scale`` (shape ``(1,)``, ones)
    and ``input_amax_history``, ``kernel_amax_history`` and ``output_grad_amax_history``
    (shape ``(amax_history_length,)``, zeros), all float32. Each step quantizes with
    ``scale = max(history) / fp8_max`` and then records its own amax.

    Attributes:
      amax_history_length: how many steps of amax each history remembers.
      e4m3_dtype: the fp8 dtype of the forward operands.
      e5m2_dtype: the fp8 dtype of the gradients.
    """

    amax_history_length: int = 1024
    e4m3_dtype: DType = jnp.float8_e4m3fn
    e5m2_dtype: DType = jnp.float8_e5m2

    def setup(self) -> None:
        """Declares the three scales and the three amax histories."""
        history = (jnp.zeros, (self.amax_history_length,), jnp.float32)
        scale = (jnp.ones, (1,), jnp.float32)
        self.input_amax_history = self.variable(
            OVERWRITE_WITH_GRADIENT, "input_amax_history", *history
        )
        self.kernel_amax_history = self.variable(
            OVERWRITE_WITH_GRADIENT, "kernel_amax_history", *history
        )
        self.output_grad_amax_history = self.variable(
            OVERWRITE_WITH_GRADIENT, "output_grad_amax_history", *history
        )
        self.input_scale = self.variable(OVERWRITE_WITH_GRADIENT, "input_scale", *scale)
        self.kernel_scale = self.variable(OVERWRITE_WITH_GRADIENT, "kernel_scale", *scale)
        self.output_grad_scale = self.variable(OVERWRITE_WITH_GRADIENT, "output_grad_scale", *scale)

    def _scaled_dot_general_state(self) -> dict[str, Any]:
        return dict(
            lhs_scale=self.input_scale.value,
            rhs_scale=self.kernel_scale.value,
            grad_scale=self.output_grad_scale.value,
            lhs_amax_history=self.input_amax_history.value,
            rhs_amax_history=self.kernel_amax_history.value,
            grad_amax_history=self.output_grad_amax_history.value,
        )

    def _direct_fp8_dtype(self) -> Any:
        e4m3, e5m2 = np.dtype(self.e4m3_dtype), np.dtype(self.e5m2_dtype)
        expected = _GRADIENT_FP8.get(e4m3)
        if expected is not None and expected != e5m2:
            raise LayerConfigError(
                _MISMATCHED_FP8_PAIR.format(
                    where=describe(self), e4m3=e4m3, e5m2=e5m2, expected=expected
                )
            )
        return e4m3


def _dot_general_operands(module: Module, args: tuple, kwargs: dict) -> tuple[Any, Any, Any]:
    """``(lhs, rhs, dimension_numbers)`` from a ``dot_general``-style call."""
    if len(args) > len(_OPERAND_NAMES):
        problem = f"it got {len(args)} positional arguments"
        raise LayerConfigError(
            _BAD_DOT_GENERAL_CALL.format(where=describe(module), problem=problem)
        )
    operands = dict(zip(_OPERAND_NAMES[: len(args)], args, strict=True))
    keywords = dict(kwargs)
    for name in _OPERAND_NAMES[len(args) :]:
        if name in keywords:
            operands[name] = keywords.pop(name)
    missing = [name for name in _OPERAND_NAMES if name not in operands]
    unknown = [name for name in keywords if name not in _IGNORED_KEYWORDS]
    if missing or unknown:
        problem = (
            f"{', '.join(missing)} missing"
            if missing
            else f"it got unexpected keyword(s) {', '.join(unknown)}"
        )
        raise LayerConfigError(
            _BAD_DOT_GENERAL_CALL.format(where=describe(module), problem=problem)
        )
    return operands["lhs"], operands["rhs"], operands["dimension_numbers"]


class Fp8DotGeneralOp(Fp8DotGeneralBase):
    """A ``dot_general`` with fp8-rounded operands and gradients (the qdq formulation).

    The input and kernel are quantize-dequantized to ``e4m3_dtype`` and multiplied at
    DEFAULT precision (XLA fuses this into an fp8 matmul where the hardware has one); the
    output gradient is quantize-dequantized to ``e5m2_dtype`` and the gradient products
    run at HIGHEST precision. Computation happens in the kernel's dtype. Deprecated in
    Flax (a ``DeprecationWarning`` on every call): prefer ``Fp8DirectDotGeneralOp``.

    Examples:
      >>> import warnings
      >>> import jax, jax.numpy as jnp
      >>> from plait import linen as nn
      >>> layer = nn.Dense(3, dot_general_cls=nn.Fp8DotGeneralOp)
      >>> with warnings.catch_warnings():
      ...     warnings.simplefilter("ignore", DeprecationWarning)
      ...     variables = layer.init(jax.random.key(0), jnp.ones((2, 4)))
      >>> sorted(variables['_overwrite_with_gradient']['Fp8DotGeneralOp_0'])
      ['input_amax_history', 'input_scale', 'kernel_amax_history', 'kernel_scale', 'output_grad_amax_history', 'output_grad_scale']
    """

    def __call__(self, *args: Any, **kwargs: Any) -> jax.Array:
        """``dot_general(lhs, rhs, dimension_numbers)`` in fp8; see the class docstring."""
        warnings.warn(
            _DEPRECATED.format(name=type(self).__name__), DeprecationWarning, stacklevel=2
        )
        x, kernel, dimension_numbers = _dot_general_operands(self, args, kwargs)
        compute_dtype = kernel.dtype
        x = jnp.asarray(x, compute_dtype)
        x_qdq = in_qdq(
            compute_dtype,
            self.e4m3_dtype,
            x,
            self.input_scale.value,
            self.input_amax_history.value,
        )
        kernel_qdq = in_qdq(
            compute_dtype,
            self.e4m3_dtype,
            kernel,
            self.kernel_scale.value,
            self.kernel_amax_history.value,
        )
        y = dot_general_with_precision(x_qdq, kernel_qdq, dimension_numbers)
        return out_qdq(
            compute_dtype,
            self.e5m2_dtype,
            y,
            self.output_grad_scale.value,
            self.output_grad_amax_history.value,
        )


class Fp8DirectDotGeneralOp(Fp8DotGeneralBase):
    """A ``dot_general`` whose operands are quantized to fp8 and multiplied in fp8.

    The input and kernel are quantized to ``e4m3_dtype`` and multiplied with an fp32
    accumulator; the product is dequantized to the kernel's dtype. The backward pass
    quantizes the output gradient to ``e5m2_dtype`` and multiplies it with the fp8
    operands (see ``fp8_ops.fp8_scaled_dot_general``). ``Fp8DotGeneral`` is the same
    class. Unlike Flax (which always uses float8_e4m3fn / float8_e5m2 here), the dtype
    fields are honoured, so the fnuz pair works too.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from plait import linen as nn
      >>> layer = nn.Dense(3, dot_general_cls=nn.Fp8DirectDotGeneralOp)
      >>> x = jnp.ones((2, 4))
      >>> variables = layer.init(jax.random.key(0), x)
      >>> grads = jax.grad(lambda v: layer.apply(v, x).sum())(variables)
      >>> fp8_state = grads['_overwrite_with_gradient']['Fp8DirectDotGeneralOp_0']
      >>> fp8_state['input_amax_history'][0].item()  # the new value: max |x|
      1.0
    """

    def __call__(self, *args: Any, **kwargs: Any) -> jax.Array:
        """``dot_general(lhs, rhs, dimension_numbers)`` in fp8; see the class docstring."""
        x, kernel, dimension_numbers = _dot_general_operands(self, args, kwargs)
        compute_dtype = kernel.dtype
        x = jnp.asarray(x, compute_dtype)
        return fp8_scaled_dot_general(
            x,
            kernel,
            dimension_numbers,
            preferred_element_type=compute_dtype,
            q_dtype=self._direct_fp8_dtype(),
            **self._scaled_dot_general_state(),
        )


#: The name Flax exports for ``Fp8DirectDotGeneralOp`` (the same class).
Fp8DotGeneral = Fp8DirectDotGeneralOp


class Fp8Einsum(Fp8DotGeneralBase):
    """A two-operand ``jnp.einsum`` whose contraction runs in fp8 (delayed scaling).

    For ``MultiHeadDotProductAttention(qk_attn_weights_einsum_cls=...,
    attn_weights_value_einsum_cls=...)``. The left operand is cast to the right one's
    dtype; the contraction is ``fp8_ops.fp8_scaled_dot_general``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from plait import linen as nn
      >>> einsum = nn.Fp8Einsum(amax_history_length=4)
      >>> lhs, rhs = jnp.full((2, 3), 0.5), jnp.ones((3, 5))
      >>> y, variables = einsum.init_with_output(jax.random.key(0), 'ij,jk->ik', lhs, rhs)
      >>> y.shape, y[0, 0].item()
      ((2, 5), 1.5)
    """

    def __call__(
        self,
        eqn: str,
        lhs: jnp.ndarray,
        rhs: jnp.ndarray,
        precision: Any = None,
        preferred_element_type: Any = None,
    ) -> jnp.ndarray:
        """``jnp.einsum(eqn, lhs, rhs)`` with an fp8 contraction."""
        compute_dtype = rhs.dtype
        lhs = jnp.asarray(lhs, compute_dtype)
        state = self._scaled_dot_general_state()
        q_dtype = self._direct_fp8_dtype()

        def fp8_dot_general(
            a: Any,
            b: Any,
            dimension_numbers: Any,
            precision: Any = None,
            preferred_element_type: Any = None,
        ) -> jax.Array:
            return fp8_scaled_dot_general(
                a,
                b,
                dimension_numbers,
                precision,
                preferred_element_type,
                q_dtype=q_dtype,
                **state,
            )

        return jnp.einsum(
            eqn,
            lhs,
            rhs,
            precision=precision,
            preferred_element_type=preferred_element_type,
            _dot_general=fp8_dot_general,
        )


class NANOOFp8DotGeneralOp(Fp8DotGeneralOp):
    """``Fp8DotGeneralOp`` with the fnuz fp8 formats (float8_e4m3fnuz / float8_e5m2fnuz).

    The fnuz formats (no infinities, no negative zero; AMD MI300) have a smaller e4m3
    range (±240) and otherwise behave like the OCP formats.

    Attributes:
      amax_history_length: how many steps of amax each history remembers.
      e4m3_dtype: the fp8 dtype of the forward operands.
      e5m2_dtype: the fp8 dtype of the gradients.
    """

    e4m3_dtype: DType = jnp.float8_e4m3fnuz
    e5m2_dtype: DType = jnp.float8_e5m2fnuz
