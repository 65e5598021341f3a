"""FP8 matmuls: the precision-split ``dot_general`` of the qdq path, and the direct
fp8 ``dot_general`` with its hand-written backward pass."""

from __future__ import annotations

import itertools
import warnings
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._errors import LayerConfigError
from ._fp8_quant import _to_plain, dequantize, in_q, out_dq, quantize, update_fp8_meta

# The gradient of a product of e4m3 operands is quantized to the e5m2 format of the same
# family (more range, less precision: gradients span more orders of magnitude).
_GRADIENT_FP8 = {
    np.dtype(jnp.float8_e4m3fn): np.dtype(jnp.float8_e5m2),
    np.dtype(jnp.float8_e4m3fnuz): np.dtype(jnp.float8_e5m2fnuz),
}

_MISSING_FP8_STATE: str = (
    "fp8_ops.fp8_scaled_dot_general: {missing} must be given (got None). The scales "
    "(shape (1,), initially ones) and amax histories (shape (history_length,), initially "
    "zeros) are the delayed-scaling state; Fp8DirectDotGeneralOp keeps them in the "
    "'_overwrite_with_gradient' collection for you. Fix: pass every one of lhs_scale, "
    "rhs_scale, grad_scale, lhs_amax_history, rhs_amax_history and grad_amax_history, or "
    "use Fp8DirectDotGeneralOp."
)

_PRECISION_IGNORED: str = (
    "dot_general_with_precision chooses its own precisions (DEFAULT forward, HIGHEST for "
    "gradients) and ignores precision={precision!r} and "
    "preferred_element_type={preferred_element_type!r}."
)


@partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4))
def dot_general_with_precision(
    lhs: Any,
    rhs: Any,
    dimension_numbers: Any,
    precision: Any = None,
    preferred_element_type: Any = None,
) -> jax.Array:
    """``lax.dot_general`` at DEFAULT precision forward and HIGHEST for its derivatives.

    The forward product of fp8-rounded operands loses nothing at DEFAULT precision (and
    XLA can then run it in fp8), while the gradients, rounded to e5m2, are accumulated
    at full precision. ``precision`` and ``preferred_element_type`` are accepted for
    ``dot_general`` compatibility, and ignored with a warning when set.

    Examples:
      >>> import jax.numpy as jnp
      >>> from plait.linen import fp8_ops
      >>> fp8_ops.dot_general_with_precision(
      ...     jnp.ones((2, 3)), jnp.ones((3, 4)), (((1,), (0,)), ((), ()))).shape
      (2, 4)
    """
    _warn_if_precision_given(precision, preferred_element_type)
    return lax.dot_general(lhs, rhs, dimension_numbers, precision=lax.Precision.DEFAULT)


def _warn_if_precision_given(precision: Any, preferred_element_type: Any) -> None:
    if precision is not None or preferred_element_type is not None:
        message = _PRECISION_IGNORED.format(
            precision=precision, preferred_element_type=preferred_element_type
        )
        warnings.warn(message, UserWarning, stacklevel=3)


@dot_general_with_precision.defjvp
def dot_general_with_precision_jvp(
    dimension_numbers: Any,
    precision: Any,
    preferred_element_type: Any,
    primals: Any,
    tangents: Any,
) -> tuple[jax.Array, jax.Array]:
    """JVP rule of ``dot_general_with_precision``: tangent products at HIGHEST."""
    _warn_if_precision_given(precision, preferred_element_type)
    lhs, rhs = primals
    lhs_dot, rhs_dot = tangents
    out = lax.dot_general(lhs, rhs, dimension_numbers, precision=lax.Precision.DEFAULT)
    highest = partial(lax.dot_general, precision=lax.Precision.HIGHEST)
    out_dot = highest(lhs_dot, rhs, dimension_numbers) + highest(lhs, rhs_dot, dimension_numbers)
    return out, out_dot


def _remaining_axes(ndim: int, *taken: Any) -> list[int]:
    used = set(itertools.chain.from_iterable(taken))
    return [axis for axis in range(ndim) if axis not in used]


def dot_general_transpose_lhs(
    g: Any,
    x: Any,
    y: Any,
    *,
    dimension_numbers: Any,
    precision: Any,
    preferred_element_type: Any | None,
    swap_ans: bool = False,
) -> jax.Array:
    """The cotangent of ``x`` in ``out = dot_general(x, y, dimension_numbers)``, given
    the cotangent ``g`` of ``out``; ``x`` is only read for its rank.

    ``swap_ans=True`` says that ``g`` is laid out as ``dot_general(y, x)`` (the free
    axes of ``y`` before those of ``x``); ``dot_general_transpose_rhs`` uses it.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from jax import lax
      >>> from plait.linen import fp8_ops
      >>> x, y, g = jnp.ones((2, 3)), jnp.arange(12.0).reshape(3, 4), jnp.ones((2, 4))
      >>> dn = (((1,), (0,)), ((), ()))
      >>> dx = fp8_ops.dot_general_transpose_lhs(
      ...     g, x, y, dimension_numbers=dn, precision=None, preferred_element_type=None)
      >>> bool(jnp.allclose(dx, g @ y.T))
      True
    """
    (x_contract, y_contract), (x_batch, y_batch) = dimension_numbers
    x_free = _remaining_axes(jnp.ndim(x), x_contract, x_batch)
    y_free = _remaining_axes(jnp.ndim(y), y_contract, y_batch)
    n_batch = len(x_batch)
    # Axes of g: the batch axes, then the free axes of the left operand of the product,
    # then those of the right operand.
    if swap_ans:
        g_y_free = range(n_batch, n_batch + len(y_free))
    else:
        g_y_free = range(n_batch + len(x_free), n_batch + len(x_free) + len(y_free))
    partial_x = lax.dot_general(
        g,
        y,
        ((tuple(g_y_free), tuple(y_free)), (tuple(range(n_batch)), tuple(y_batch))),
        precision=precision,
        preferred_element_type=preferred_element_type,
    )
    # `partial_x` holds x's batch axes, x's free axes, then one axis per contracted axis
    # of y in y's order: name the x axis each stands for, and put them in x's order.
    x_axis_for_y_axis = dict(zip(y_contract, x_contract, strict=True))
    source_x_axes = [*x_batch, *x_free, *(x_axis_for_y_axis[a] for a in sorted(y_contract))]
    return lax.transpose(partial_x, tuple(int(a) for a in np.argsort(source_x_axes)))


def dot_general_transpose_rhs(
    g: Any,
    x: Any,
    y: Any,
    *,
    dimension_numbers: Any,
    precision: Any,
    preferred_element_type: Any | None,
) -> jax.Array:
    """The cotangent of ``y`` in ``out = dot_general(x, y, dimension_numbers)``, given
    the cotangent ``g`` of ``out``; ``y`` is only read for its rank.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from plait.linen import fp8_ops
      >>> x, y, g = jnp.arange(6.0).reshape(2, 3), jnp.ones((3, 4)), jnp.ones((2, 4))
      >>> dy = fp8_ops.dot_general_transpose_rhs(
      ...     g, x, y, dimension_numbers=(((1,), (0,)), ((), ())), precision=None,
      ...     preferred_element_type=None)
      >>> bool(jnp.allclose(dy, x.T @ g))
      True
    """
    (x_contract, y_contract), (x_batch, y_batch) = dimension_numbers
    swapped = ((y_contract, x_contract), (y_batch, x_batch))
    return dot_general_transpose_lhs(
        g,
        y,
        x,
        dimension_numbers=swapped,
        precision=precision,
        preferred_element_type=preferred_element_type,
        swap_ans=True,
    )


def _product_dtype(preferred_element_type: Any, lhs: Any, rhs: Any) -> Any:
    # With no preference, the product of fp8 operands would itself be fp8; produce what
    # `dot_general` of the unquantized operands would have produced instead.
    if preferred_element_type is not None:
        return np.dtype(preferred_element_type)
    return jnp.result_type(lhs, rhs)


def _gradient_fp8(q_operand: Any) -> Any:
    return _GRADIENT_FP8.get(np.dtype(q_operand.dtype), np.dtype(jnp.float8_e5m2))


@partial(jax.custom_vjp, nondiff_argnums=(8, 9))
def quantized_dot(
    lhs: Any,
    q_lhs: Any,
    lhs_scale: Any,
    rhs: Any,
    q_rhs: Any,
    rhs_scale: Any,
    out_grad_scale: Any,
    out_grad_amax_history: Any,
    dimension_numbers: Any,
    preferred_element_type: Any = None,
) -> jax.Array:
    """``dot_general(q_lhs, q_rhs)`` of fp8 operands, still scaled (see ``out_dq``).

    The unquantized ``lhs`` / ``rhs`` and the scales are here for the backward pass: it
    quantizes the incoming gradient to e5m2 (delayed scaling with ``out_grad_scale`` /
    ``out_grad_amax_history``, which receive their new values), multiplies it with the
    fp8 operands, and dequantizes the products into the cotangents of ``lhs`` and
    ``rhs``. The cotangent reaching this function must be the one of the *dequantized*
    product, which is what ``out_dq`` passes through.

    Examples:
      >>> import jax.numpy as jnp
      >>> from plait.linen import fp8_ops
      >>> q = jnp.ones((2, 3), jnp.float8_e4m3fn)
      >>> fp8_ops.quantized_dot(jnp.ones((2, 3)), q, jnp.ones(1), jnp.ones((2, 3)), q,
      ...     jnp.ones(1), jnp.ones(1), jnp.zeros(4), (((1,), (1,)), ((), ())),
      ...     jnp.float32).tolist()
      [[3.0, 3.0], [3.0, 3.0]]
    """
    del lhs_scale, rhs_scale, out_grad_scale, out_grad_amax_history
    return lax.dot_general(
        q_lhs,
        q_rhs,
        dimension_numbers,
        precision=lax.Precision.DEFAULT,
        preferred_element_type=_product_dtype(preferred_element_type, lhs, rhs),
    )


def quantized_dot_fwd(
    lhs: Any,
    q_lhs: Any,
    lhs_scale: Any,
    rhs: Any,
    q_rhs: Any,
    rhs_scale: Any,
    out_grad_scale: Any,
    out_grad_amax_history: Any,
    dimension_numbers: Any,
    preferred_element_type: Any,
) -> tuple[jax.Array, tuple[Any, ...]]:
    """Forward rule of ``quantized_dot``: the product, and everything the backward needs."""
    out = quantized_dot(
        lhs,
        q_lhs,
        lhs_scale,
        rhs,
        q_rhs,
        rhs_scale,
        out_grad_scale,
        out_grad_amax_history,
        dimension_numbers,
        preferred_element_type,
    )
    res = (lhs, q_lhs, lhs_scale, rhs, q_rhs, rhs_scale, out_grad_scale, out_grad_amax_history)
    return out, res


def quantized_dot_bwd(
    dimension_numbers: Any, preferred_element_type: Any, res: Any, g: Any
) -> tuple[Any, ...]:
    """Backward rule of ``quantized_dot``: fp8 gradient products, dequantized."""
    lhs, q_lhs, lhs_scale, rhs, q_rhs, rhs_scale, grad_scale, grad_history = res
    grad_fp8 = _gradient_fp8(q_lhs)
    new_grad_scale, new_grad_history = update_fp8_meta(g, grad_fp8, grad_scale, grad_history)
    plain_grad_scale = _to_plain(new_grad_scale)
    compute_dtype = _product_dtype(preferred_element_type, lhs, rhs)
    q_g = quantize(g, grad_fp8, plain_grad_scale, compute_dtype)
    common = dict(
        dimension_numbers=dimension_numbers,
        precision=lax.Precision.HIGHEST,
        preferred_element_type=compute_dtype,
    )
    scaled_grad_lhs = dot_general_transpose_lhs(q_g, lhs, q_rhs, **common)
    scaled_grad_rhs = dot_general_transpose_rhs(q_g, q_lhs, rhs, **common)
    grad_lhs = dequantize(scaled_grad_lhs, lhs.dtype, _to_plain(rhs_scale) * plain_grad_scale)
    grad_rhs = dequantize(scaled_grad_rhs, rhs.dtype, _to_plain(lhs_scale) * plain_grad_scale)
    return grad_lhs, None, None, grad_rhs, None, None, new_grad_scale, new_grad_history


quantized_dot.defvjp(quantized_dot_fwd, quantized_dot_bwd)


def fp8_scaled_dot_general(
    lhs: Any,
    rhs: Any,
    dimension_numbers: Any,
    precision: Any = None,
    preferred_element_type: Any = None,
    *,
    lhs_scale: Any = None,
    rhs_scale: Any = None,
    grad_scale: Any = None,
    lhs_amax_history: Any = None,
    rhs_amax_history: Any = None,
    grad_amax_history: Any = None,
    quantize_compute_type: Any = jnp.float32,
    q_dtype: Any = jnp.float8_e4m3fn,
) -> jax.Array:
    """A ``dot_general`` computed on fp8 operands with delayed scaling.

    Both operands are quantized to ``q_dtype`` (e4m3) with scales derived from their amax
    histories, multiplied in fp8, and the product is dequantized; the backward pass
    quantizes the gradient to the e5m2 dtype of the same family. Differentiating gives
    the usual cotangents for ``lhs`` / ``rhs`` and the *new values* for the six scale
    and history arguments.

    ``precision`` is accepted for ``dot_general`` compatibility; fp8 products run at
    DEFAULT precision and gradients at HIGHEST. ``q_dtype`` is a plait addition (Flax
    always uses ``float8_e4m3fn``): pass ``jnp.float8_e4m3fnuz`` for the fnuz family.
    With ``preferred_element_type=None`` the result has the dtype ``dot_general`` of the
    unquantized operands would have.

    Examples:
      >>> import jax.numpy as jnp
      >>> from plait.linen import fp8_ops
      >>> state = dict(lhs_scale=jnp.ones(1), rhs_scale=jnp.ones(1), grad_scale=jnp.ones(1),
      ...              lhs_amax_history=jnp.zeros(4), rhs_amax_history=jnp.zeros(4),
      ...              grad_amax_history=jnp.zeros(4))
      >>> y = fp8_ops.fp8_scaled_dot_general(jnp.full((2, 3), 0.5), jnp.ones((3, 4)),
      ...                                    (((1,), (0,)), ((), ())), **state)
      >>> y.dtype, y[0, 0].item()
      (dtype('float32'), 1.5)
    """
    del precision
    state = dict(
        lhs_scale=lhs_scale,
        rhs_scale=rhs_scale,
        grad_scale=grad_scale,
        lhs_amax_history=lhs_amax_history,
        rhs_amax_history=rhs_amax_history,
        grad_amax_history=grad_amax_history,
    )
    missing = [name for name, value in state.items() if value is None]
    if missing:
        raise LayerConfigError(_MISSING_FP8_STATE.format(missing=", ".join(missing)))
    out_dtype = _product_dtype(preferred_element_type, lhs, rhs)
    q_lhs, new_lhs_scale = in_q(quantize_compute_type, q_dtype, lhs, lhs_scale, lhs_amax_history)
    q_rhs, new_rhs_scale = in_q(quantize_compute_type, q_dtype, rhs, rhs_scale, rhs_amax_history)
    scaled = quantized_dot(
        lhs,
        q_lhs,
        new_lhs_scale,
        rhs,
        q_rhs,
        new_rhs_scale,
        grad_scale,
        grad_amax_history,
        dimension_numbers,
        out_dtype,
    )
    return out_dq(out_dtype, new_lhs_scale, new_rhs_scale, scaled)
