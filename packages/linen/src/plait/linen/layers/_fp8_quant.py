"""FP8 delayed scaling: quantize, dequantize, and the scale / amax-history update.

Conventions (the same as Flax's ``flax.linen.fp8_ops``):

* ``scale`` is a dequantization factor: ``x ≈ dequantize(quantize(x, scale), scale)``
  with ``quantize(x) = clip(x / scale, ±fp8_max)`` rounded to the fp8 dtype. It has
  shape ``(1,)`` (one scale per tensor).
* ``amax_history`` holds the largest ``|x|`` of the last ``len(amax_history)`` steps,
  newest at index 0. *Delayed* scaling: a step quantizes with the scale derived from the
  history of earlier steps (``max(history) / fp8_max``), then records its own amax.
* The scale and history are "overwrite with gradient" state: the custom VJPs below return
  their *new values* as their cotangents, and the training loop stores those instead of
  taking an optimizer step (see ``Fp8DotGeneralBase``).

Scales and histories may be plain floats or ``fm32`` (see ``_fp8_meta``); every function
that does arithmetic on them converts ``fm32`` to float32 first and converts results back,
so the cotangents keep the dtype of the primal.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._errors import LayerConfigError
from ._fp8_meta import fp8_meta_dtype_wrapper

# Every fp8 dtype the ops can quantize to: the OCP formats ("fn": no infinities) and the
# "fnuz" formats (no infinities, no negative zero) used by AMD hardware.
_FP8_DTYPES = tuple(
    np.dtype(d)
    for d in (jnp.float8_e4m3fn, jnp.float8_e5m2, jnp.float8_e4m3fnuz, jnp.float8_e5m2fnuz)
)

_UNSUPPORTED_FP8: str = (
    "fp8_ops.get_fp8_max: {dtype} is not an fp8 dtype the fp8 ops support; expected one of "
    "{supported}. Fix: quantize the forward pass to float8_e4m3fn (or float8_e4m3fnuz) and "
    "gradients to float8_e5m2 (or float8_e5m2fnuz)."
)


def _is_meta(x: Any) -> bool:
    return isinstance(getattr(x, "dtype", None), fp8_meta_dtype_wrapper)


def _to_plain(x: Any) -> Any:
    """A ``fm32`` array as its float32 numbers; any other array unchanged."""
    if _is_meta(x):
        return lax.convert_element_type(x, x.dtype.float_dtype)
    return x


def _like(value: Any, reference: Any) -> Any:
    """``value`` in the dtype of ``reference`` (restoring ``fm32`` where it was used)."""
    if _is_meta(reference):
        return lax.convert_element_type(value.astype(reference.dtype.float_dtype), reference.dtype)
    return value.astype(reference.dtype)


def _broadcast_scale(scale: Any, dtype: Any, shape: tuple[int, ...]) -> jax.Array:
    scale = jnp.asarray(_to_plain(scale)).astype(dtype)
    if scale.size == 1:
        # A per-tensor scale of shape (1,) meets inputs of any rank, scalars included.
        scale = jnp.reshape(scale, ())
    return jnp.broadcast_to(scale, shape)


def get_fp8_max(fp8_dtype: Any, out_dtype: Any) -> jax.Array:
    """The largest finite value of ``fp8_dtype``, as an ``out_dtype`` scalar.

    Examples:
      >>> import jax.numpy as jnp
      >>> from plait.linen import fp8_ops
      >>> float(fp8_ops.get_fp8_max(jnp.float8_e4m3fn, jnp.float32))
      448.0
      >>> float(fp8_ops.get_fp8_max(jnp.float8_e5m2, jnp.float32))
      57344.0
    """
    if np.dtype(fp8_dtype) not in _FP8_DTYPES:
        supported = ", ".join(d.name for d in _FP8_DTYPES)
        raise LayerConfigError(
            _UNSUPPORTED_FP8.format(dtype=np.dtype(fp8_dtype).name, supported=supported)
        )
    return jnp.asarray(jnp.finfo(fp8_dtype).max, dtype=out_dtype)


def quantize(x: Any, q_dtype: Any, scale: Any, compute_dtype: Any) -> jax.Array:
    """``x / scale``, saturated to the range of ``q_dtype`` and rounded to it.

    The division and clipping happen in ``compute_dtype``; values beyond the fp8 range
    saturate to ``±fp8_max`` instead of becoming NaN.

    Examples:
      >>> import jax.numpy as jnp
      >>> from plait.linen import fp8_ops
      >>> q = fp8_ops.quantize(jnp.array([1.0, 3.0, 1e6]), jnp.float8_e4m3fn,
      ...                      jnp.array([2.0]), jnp.float32)
      >>> q.dtype, q.astype(jnp.float32).tolist()
      (dtype(float8_e4m3fn), [0.5, 1.5, 448.0])
    """
    x = jnp.asarray(x)
    limit = get_fp8_max(q_dtype, compute_dtype)
    scaled = x.astype(compute_dtype) / _broadcast_scale(scale, compute_dtype, x.shape)
    return jnp.clip(scaled, -limit, limit).astype(q_dtype)


def dequantize(x: Any, dq_dtype: Any, scale: Any) -> jax.Array:
    """``x * scale`` in ``dq_dtype``: the inverse of ``quantize`` (up to rounding).

    Examples:
      >>> import jax.numpy as jnp
      >>> from plait.linen import fp8_ops
      >>> q = jnp.array([0.5, 1.5], jnp.float8_e4m3fn)
      >>> fp8_ops.dequantize(q, jnp.float32, jnp.array([2.0])).tolist()
      [1.0, 3.0]
    """
    x = jnp.asarray(x)
    return x.astype(dq_dtype) * _broadcast_scale(scale, dq_dtype, x.shape)


def qdq(x: Any, q_dtype: Any, scale: Any, compute_dtype: Any) -> jax.Array:
    """Quantize then dequantize: ``x`` rounded to the fp8 grid scaled by ``scale``.

    The result has the dtype of ``x``. XLA recognises ``qdq`` around a ``dot_general``
    and, on hardware with fp8 matmuls, runs the matmul in fp8.

    Examples:
      >>> import jax.numpy as jnp
      >>> from plait.linen import fp8_ops
      >>> fp8_ops.qdq(jnp.array([1.0, 1.1]), jnp.float8_e4m3fn, jnp.array([1.0]),
      ...             jnp.float32).tolist()  # 3 mantissa bits: 1.1 rounds to 1.125
      [1.0, 1.125]
    """
    x = jnp.asarray(x)
    return dequantize(quantize(x, q_dtype, scale, compute_dtype), x.dtype, scale)


def compute_scale(amax: Any, scale: Any, fp8_max: Any, margin: Any = 0) -> jax.Array:
    """The scale that maps ``amax`` to ``fp8_max / 2**margin``.

    When ``amax`` is zero, negative or not finite (no history yet, or an overflow) the
    previous ``scale`` is kept, so one bad step cannot poison the scale.

    Examples:
      >>> import jax.numpy as jnp
      >>> from plait.linen import fp8_ops
      >>> fp8_ops.compute_scale(jnp.float32(896.0), jnp.ones(1), 448.0).tolist()
      [2.0]
      >>> fp8_ops.compute_scale(jnp.float32(0.0), jnp.full(1, 3.0), 448.0).tolist()
      [3.0]
    """
    amax = jnp.asarray(amax)
    scale = jnp.asarray(scale)
    target = jnp.asarray(fp8_max, amax.dtype) / jnp.asarray(2.0**margin, amax.dtype)
    usable = jnp.isfinite(amax) & (amax > 0)
    return jnp.where(usable, amax / target, scale).astype(scale.dtype)


def compute_amax_history(x: Any, amax_history: Any) -> jax.Array:
    """``amax_history`` with ``max(|x|)`` recorded and the oldest entry dropped.

    The newest amax goes to index 0; the history is rotated so the entry it replaces is
    always the oldest one (the same layout as Flax and Transformer Engine, so histories
    saved by either can be loaded).

    Examples:
      >>> import jax.numpy as jnp
      >>> from plait.linen import fp8_ops
      >>> history = jnp.zeros(3)
      >>> for value in (1.0, 2.0, 3.0, 4.0):
      ...     history = fp8_ops.compute_amax_history(jnp.array([-value]), history)
      >>> history.tolist()  # 1.0 (the oldest) was dropped
      [4.0, 2.0, 3.0]
    """
    amax_history = jnp.asarray(amax_history)
    amax = jnp.max(jnp.abs(jnp.asarray(x))).astype(amax_history.dtype)
    return jnp.roll(amax_history, -1, axis=0).at[0].set(amax)


def update_fp8_meta(x: Any, q_dtype: Any, scale: Any, amax_history: Any) -> tuple[Any, Any]:
    """The scale for quantizing ``x`` now, and the history after recording ``x``.

    The scale comes from the history *before* ``x`` (delayed scaling), so the amax
    reduction over ``x`` runs alongside the matmul instead of in front of it.
    Returns ``(new_scale, new_amax_history)`` in the dtypes of the arguments (``fm32``
    included).

    Examples:
      >>> import jax.numpy as jnp
      >>> from plait.linen import fp8_ops
      >>> scale, history = fp8_ops.update_fp8_meta(
      ...     jnp.array([5.0]), jnp.float8_e4m3fn, jnp.ones(1), jnp.array([0.0, 896.0]))
      >>> scale.tolist(), history.tolist()
      ([2.0], [5.0, 0.0])
    """
    plain_scale = _to_plain(scale)
    plain_history = _to_plain(amax_history).astype(jnp.float32)
    fp8_max = get_fp8_max(q_dtype, jnp.float32)
    new_scale = compute_scale(jnp.max(plain_history, axis=0), plain_scale, fp8_max)
    new_history = compute_amax_history(x, plain_history)
    return _like(new_scale, scale), _like(new_history, amax_history)


def quantize_dequantize_update(
    x: Any, q_dtype: Any, scale: Any, amax_history: Any, compute_dtype: Any
) -> tuple[jax.Array, Any, Any]:
    """``(qdq(x) with the new scale, new_scale, new_amax_history)``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from plait.linen import fp8_ops
      >>> y, scale, history = fp8_ops.quantize_dequantize_update(
      ...     jnp.array([1.1]), jnp.float8_e4m3fn, jnp.ones(1), jnp.zeros(2), jnp.float32)
      >>> y.tolist(), scale.tolist(), history.tolist()
      ([1.125], [1.0], [1.100000023841858, 0.0])
    """
    new_scale, new_history = update_fp8_meta(x, q_dtype, scale, amax_history)
    return qdq(x, q_dtype, _to_plain(new_scale), compute_dtype), new_scale, new_history


# --- the "qdq" path: quantize-dequantize around a higher-precision dot_general --------


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def in_qdq(compute_dtype: Any, q_dtype: Any, inp: Any, scale: Any, amax_history: Any) -> Any:
    """Rounds an operand of a matmul to fp8 (delayed scaling), differentiably.

    Forward: ``qdq(inp)`` with the scale from ``amax_history``. Backward: the gradient
    passes to ``inp`` unchanged (straight-through), and ``scale`` / ``amax_history``
    receive their new values (see the module docstring).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from plait.linen import fp8_ops
      >>> f = lambda x, s, h: fp8_ops.in_qdq(jnp.float32, jnp.float8_e4m3fn, x, s, h).sum()
      >>> dx, new_scale, new_history = jax.grad(f, argnums=(0, 1, 2))(
      ...     jnp.array([1.1, -2.0]), jnp.ones(1), jnp.zeros(2))
      >>> dx.tolist(), new_scale.tolist(), new_history.tolist()
      ([1.0, 1.0], [1.0], [2.0, 0.0])
    """
    qdq_inp, _, _ = quantize_dequantize_update(inp, q_dtype, scale, amax_history, compute_dtype)
    return qdq_inp


def in_qdq_fwd(
    compute_dtype: Any, q_dtype: Any, inp: Any, scale: Any, amax_history: Any
) -> tuple[Any, tuple[Any, Any]]:
    """Forward rule of ``in_qdq``: keeps the new scale and history for the backward."""
    qdq_inp, new_scale, new_history = quantize_dequantize_update(
        inp, q_dtype, scale, amax_history, compute_dtype
    )
    return qdq_inp, (new_scale, new_history)


def in_qdq_bwd(compute_dtype: Any, q_dtype: Any, res: Any, g: Any) -> tuple[Any, Any, Any]:
    """Backward rule of ``in_qdq``: ``(g, new_scale, new_history)``."""
    del compute_dtype, q_dtype
    new_scale, new_history = res
    return g, new_scale, new_history


in_qdq.defvjp(in_qdq_fwd, in_qdq_bwd)


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def out_qdq(compute_dtype: Any, q_dtype: Any, out: Any, scale: Any, amax_history: Any) -> Any:
    """Identity forward; rounds the incoming gradient to fp8 (e5m2) on the way back.

    Backward: the gradient of ``out`` is quantize-dequantized with the scale from
    ``amax_history`` (delayed scaling), and ``scale`` / ``amax_history`` receive their new
    values.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from plait.linen import fp8_ops
      >>> f = lambda y, s, h: (fp8_ops.out_qdq(jnp.float32, jnp.float8_e5m2, y, s, h)
      ...                      * jnp.array([1.1, 3.0])).sum()
      >>> dy, _, new_history = jax.grad(f, argnums=(0, 1, 2))(
      ...     jnp.zeros(2), jnp.ones(1), jnp.zeros(2))
      >>> dy.tolist(), new_history.tolist()  # 2 mantissa bits: 1.1 rounds to 1.0
      ([1.0, 3.0], [3.0, 0.0])
    """
    del compute_dtype, q_dtype, scale, amax_history
    return out


def out_qdq_fwd(
    compute_dtype: Any, q_dtype: Any, out: Any, scale: Any, amax_history: Any
) -> tuple[Any, tuple[Any, Any]]:
    """Forward rule of ``out_qdq``: keeps the current scale and history."""
    del compute_dtype, q_dtype
    return out, (scale, amax_history)


def out_qdq_bwd(compute_dtype: Any, q_dtype: Any, res: Any, g: Any) -> tuple[Any, Any, Any]:
    """Backward rule of ``out_qdq``: ``(qdq(g), new_scale, new_history)``."""
    scale, amax_history = res
    return quantize_dequantize_update(g, q_dtype, scale, amax_history, compute_dtype)


out_qdq.defvjp(out_qdq_fwd, out_qdq_bwd)


# --- the direct path: a dot_general on fp8 operands ------------------------------------


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def in_q(
    compute_dtype: Any, q_dtype: Any, inp: Any, scale: Any, amax_history: Any
) -> tuple[Any, Any]:
    """Quantizes an operand to fp8 (delayed scaling): returns ``(q_inp, new_scale)``.

    Not differentiable in ``inp`` (its cotangent is zero): ``quantized_dot`` receives the
    unquantized operand too and computes its gradient. ``scale`` / ``amax_history``
    receive their new values.

    Examples:
      >>> import jax.numpy as jnp
      >>> from plait.linen import fp8_ops
      >>> q, scale = fp8_ops.in_q(jnp.float32, jnp.float8_e4m3fn, jnp.array([3.0]),
      ...                         jnp.ones(1), jnp.array([896.0]))
      >>> q.dtype, q.astype(jnp.float32).tolist(), scale.tolist()
      (dtype(float8_e4m3fn), [1.5], [2.0])
    """
    new_scale, _ = update_fp8_meta(inp, q_dtype, scale, amax_history)
    return quantize(inp, q_dtype, _to_plain(new_scale), compute_dtype), new_scale


def in_q_fwd(
    compute_dtype: Any, q_dtype: Any, inp: Any, scale: Any, amax_history: Any
) -> tuple[tuple[Any, Any], tuple[Any, Any]]:
    """Forward rule of ``in_q``: keeps the new scale and history for the backward."""
    new_scale, new_history = update_fp8_meta(inp, q_dtype, scale, amax_history)
    q_inp = quantize(inp, q_dtype, _to_plain(new_scale), compute_dtype)
    return (q_inp, new_scale), (new_scale, new_history)


def in_q_bwd(compute_dtype: Any, q_dtype: Any, res: Any, _: Any) -> tuple[Any, Any, Any]:
    """Backward rule of ``in_q``: ``(None, new_scale, new_history)``."""
    del compute_dtype, q_dtype
    new_scale, new_history = res
    return None, new_scale, new_history


in_q.defvjp(in_q_fwd, in_q_bwd)


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def out_dq(dq_type: Any, lhs_scale: Any, rhs_scale: Any, out: Any) -> Any:
    """Dequantizes the product of two quantized operands: ``out * lhs_scale * rhs_scale``.

    The gradient reaches ``out`` unscaled: ``quantized_dot``'s backward applies the
    scales itself.

    Examples:
      >>> import jax.numpy as jnp
      >>> from plait.linen import fp8_ops
      >>> fp8_ops.out_dq(jnp.float32, jnp.array([2.0]), jnp.array([0.5]),
      ...                jnp.array([3.0, 4.0])).tolist()
      [3.0, 4.0]
    """
    combined = _to_plain(lhs_scale) * _to_plain(rhs_scale)
    return dequantize(out, dq_type, combined)


def out_dq_fwd(dq_type: Any, lhs_scale: Any, rhs_scale: Any, out: Any) -> tuple[Any, None]:
    """Forward rule of ``out_dq`` (no residuals)."""
    return out_dq(dq_type, lhs_scale, rhs_scale, out), None


def out_dq_bwd(dq_type: Any, _: Any, g: Any) -> tuple[None, None, Any]:
    """Backward rule of ``out_dq``: ``(None, None, g)``."""
    del dq_type
    return None, None, g


out_dq.defvjp(out_dq_fwd, out_dq_bwd)
