"""``fp8_meta32``: a float32 look-alike whose gradients combine by ``max``, not ``+``.

Why it exists: the fp8 scale and amax-history variables receive their *new value* as
gradient (see ``_fp8_quant``). When one such variable feeds several quantize calls (a
layer reused inside ``scan``, or called twice), JAX adds the cotangents of every use, and
the "new value" comes out multiplied by the number of uses. Converting the variable to
this dtype first (``lax.convert_element_type(scale, fm32)``) makes JAX combine the
cotangents with ``max`` instead, which is the right merge for a scale and an amax.

This is the only module of ``plait.linen`` that touches ``jax._src``: JAX has no public
API for extended dtypes with custom tangent arithmetic. Every private name is looked up
inside one ``try`` so that a JAX release that moves them leaves ``CAN_USE_EARRAY`` False
(and ``fm32`` unusable) instead of breaking ``import plait.linen``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
import numpy as np
from jax import dtypes, lax

try:  # Private JAX pieces; see the module docstring.
    from jax._src import ad_util as _ad_util
    from jax._src import core as _core
    from jax._src import dtypes as _src_dtypes
    from jax._src import earray as _earray
    from jax._src.interpreters import pxla as _pxla

    _ExtendedDTypeBase: Any = _src_dtypes.ExtendedDType
    _ = (_core.ShapedArray, _core.typeof, _core.physical_aval, _pxla.global_result_handlers)
    _ = (_earray.EArray, _ad_util.raw_jaxval_adders)
    CAN_USE_EARRAY = True
except (ImportError, AttributeError):  # pragma: no cover - depends on the JAX release
    _ExtendedDTypeBase = object
    CAN_USE_EARRAY = False


def _representation(dtype: Any) -> np.dtype:
    return np.dtype(dtype.float_dtype)


def _as_float(x: Any) -> Any:
    meta = _core.typeof(x).dtype
    return lax.convert_element_type(x, _representation(meta)), meta


class Fp8MetaTyRules:
    """The arithmetic JAX needs to treat ``fp8_meta_dtype_wrapper`` arrays as values.

    The element is one float of ``float_dtype``; tangents have the same dtype; adding two
    tangents takes their element-wise maximum (so the additive identity is ``-inf``).
    """

    # Older JAX releases read this flag instead of calling `convert_to`/`convert_from`.
    allow_conversion = True

    @staticmethod
    def physical_element_aval(dtype: Any) -> Any:
        """One scalar of the underlying float dtype per element."""
        return _core.ShapedArray((), _representation(dtype))

    @staticmethod
    def convert_from(fp8_meta_dtype: Any, other_dtype: Any) -> bool:
        """Converting back to the underlying float dtype is allowed."""
        return np.dtype(other_dtype) == _representation(fp8_meta_dtype)

    @staticmethod
    def convert_to(other_dtype: Any, fp8_meta_dtype: Any) -> bool:
        """Converting from the underlying float dtype is allowed."""
        return np.dtype(other_dtype) == _representation(fp8_meta_dtype)

    @staticmethod
    def add(dt: Any, x: Any, y: Any) -> Any:
        """Combines two cotangents by element-wise maximum."""
        # `dt` is ignored on purpose: some JAX releases pass a wrong object here, and
        # the operands carry their dtype anyway.
        del dt
        x_float, meta = _as_float(x)
        y_float, _ = _as_float(y)
        return lax.convert_element_type(jnp.maximum(x_float, y_float), meta)

    @staticmethod
    def zero(dt: Any) -> Any:
        """The identity of ``max``: the most negative value of the float dtype."""
        lowest = jnp.asarray(-jnp.inf, _representation(dt))
        return lax.convert_element_type(lowest, dt)

    @staticmethod
    def tangent_dtype(dtype: Any) -> Any:
        """Tangents and cotangents keep the max-combining dtype."""
        return dtype

    @staticmethod
    def full(shape: Any, fill_value: Any, dtype: Any) -> Any:
        """An array of ``shape`` filled with ``fill_value``."""
        filled = lax.full(shape, fill_value, _representation(dtype))
        return lax.convert_element_type(filled, dtype)

    @staticmethod
    def global_sharded_result_handler(aval: Any, out_sharding: Any, committed: bool) -> Any:
        """Wraps a computation's float output buffers back into the extended dtype."""
        physical = _core.physical_aval(aval)
        make_handler = _pxla.global_result_handlers[_core.ShapedArray]
        physical_handler = make_handler(physical, out_sharding, committed)
        return lambda buffers: _earray.EArray(aval, physical_handler(buffers))


class fp8_meta_dtype(dtypes.extended):
    """The scalar type of ``fp8_meta_dtype_wrapper`` (a subtype of ``jax.dtypes.extended``)."""


@dataclasses.dataclass(frozen=True, eq=True)
class fp8_meta_dtype_wrapper(_ExtendedDTypeBase):
    """An extended dtype: ``float_dtype`` values whose cotangents combine by ``max``.

    Attributes:
      float_dtype: the dtype of the stored numbers (``jnp.float32`` for ``fm32``).

    Convert a float32 scale or amax history to ``fm32`` before it enters the fp8 ops,
    and let the ops convert back: JAX can differentiate the conversion *to* an extended
    dtype but (as of JAX 0.12) not the conversion back.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from plait.linen import fp8_ops
      >>> def three_uses(scale, history, meta_dtype):
      ...     scale = jax.lax.convert_element_type(scale, meta_dtype)
      ...     history = jax.lax.convert_element_type(history, meta_dtype)
      ...     x = jnp.array([1.0, -3.0])
      ...     for _ in range(3):
      ...         x = fp8_ops.in_qdq(jnp.float32, jnp.float8_e4m3fn, x, scale, history)
      ...     return x.sum()
      >>> grad = jax.grad(three_uses, argnums=(0, 1))
      >>> grad(jnp.ones(1), jnp.zeros(3), fp8_ops.fm32)[1]  # the new history, once
      Array([3., 0., 0.], dtype=float32)
      >>> grad(jnp.ones(1), jnp.zeros(3), jnp.float32)[1]  # three uses, summed
      Array([9., 0., 0.], dtype=float32)
    """

    float_dtype: Any
    _rules: type = Fp8MetaTyRules
    type: type = fp8_meta_dtype

    @property
    def name(self) -> str:
        """``fp8_meta<bits>``, e.g. ``fp8_meta32``."""
        return f"fp8_meta{np.dtype(self.float_dtype).itemsize * 8}"

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return self.name


fm32 = fp8_meta_dtype_wrapper(np.dtype(np.float32))
#: The name Flax used first for ``fm32``; the same object.
fp32_max_grad = fm32


def _add_concrete_meta_arrays(x: Any, y: Any) -> Any:
    return Fp8MetaTyRules.add(None, x, y)


if CAN_USE_EARRAY:
    # Outside `jit`, JAX adds concrete cotangents through a table keyed by array type,
    # and has no entry for extended-dtype arrays; add one (never replacing JAX's own).
    _ad_util.raw_jaxval_adders.setdefault(_earray.EArray, _add_concrete_meta_arrays)
