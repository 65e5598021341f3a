"""Dtype selection for layers: which dtype a computation runs in.

Layers hold parameters in ``param_dtype`` and compute in ``dtype``; when ``dtype`` is
None the computation dtype is inferred from the inputs and parameters by JAX's type
promotion, and (with ``inexact=True``) integer or boolean results are lifted to a
floating type so that the layer can still differentiate.

Examples:
  >>> import jax.numpy as jnp
  >>> from plait.core.nn import dtypes
  >>> dtypes.canonicalize_dtype(jnp.ones(2, jnp.bfloat16), jnp.ones(2, jnp.float32))
  dtype('float32')
  >>> x, y = dtypes.promote_dtype((jnp.ones(2, jnp.int32), None))
  >>> x.dtype, y
  (dtype('float32'), None)
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from ._errors import NNDtypeError

_NOT_INEXACT = (
    "dtype {dtype} is not a floating or complex type, but this computation needs one "
    "(inexact=True). Pass a floating dtype such as jnp.float32 or jnp.bfloat16, or "
    "inexact=False if integer arithmetic is really intended."
)


def canonicalize_dtype(*args: Any, dtype: Any = None, inexact: bool = True) -> Any:
    """Returns the dtype a computation over ``args`` should use.

    Args:
      *args: arrays, scalars or None (None entries are ignored).
      dtype: an explicit dtype; when given it wins over inference.
      inexact: require a floating or complex dtype; an inferred integer/bool dtype is
        promoted together with float32 (so int32 becomes float32).

    Returns:
      A numpy dtype.

    Raises:
      NNDtypeError: if ``inexact`` and the explicit ``dtype`` is not inexact.

    Examples:
      >>> import jax.numpy as jnp
      >>> canonicalize_dtype(jnp.ones(2, jnp.int32))
      dtype('float32')
      >>> canonicalize_dtype(jnp.ones(2, jnp.int32), inexact=False)
      dtype('int32')
    """
    if dtype is None:
        present = [jnp.asarray(x) for x in args if x is not None]
        dtype = jnp.result_type(*present)
        if inexact and not jnp.issubdtype(dtype, jnp.inexact):
            dtype = jnp.promote_types(jnp.float32, dtype)
    dtype = jnp.dtype(dtype)
    if inexact and not jnp.issubdtype(dtype, jnp.inexact):
        raise NNDtypeError(_NOT_INEXACT.format(dtype=dtype))
    return dtype


def promote_dtype[T](args: T, /, *, dtype: Any = None, inexact: bool = True) -> T:
    """Casts a tuple of arrays to one common dtype (``flax.nnx`` calling convention).

    Args:
      args: a tuple (or list) of arrays; None entries are passed through.
      dtype: the target dtype; inferred with :func:`canonicalize_dtype` when None.
      inexact: see :func:`canonicalize_dtype`.

    Returns:
      A container of the same type as ``args`` holding the cast arrays.

    Examples:
      >>> import jax.numpy as jnp
      >>> a, b = promote_dtype((jnp.ones(1, jnp.bfloat16), jnp.ones(1, jnp.float32)))
      >>> a.dtype
      dtype('float32')
    """
    target = canonicalize_dtype(*args, dtype=dtype, inexact=inexact)
    cast = [None if x is None else jnp.asarray(x, target) for x in args]
    return tuple(cast) if isinstance(args, tuple) else type(args)(cast)  # type: ignore[return-value,call-arg]


def promote_dtype_args(*args: Any, dtype: Any = None, inexact: bool = True) -> list[Any]:
    """Casts arrays to one common dtype (``flax.linen`` calling convention: varargs).

    Same as :func:`promote_dtype` but takes the arrays as separate arguments and
    returns a list, which is what ``flax.linen.dtypes.promote_dtype`` does.

    Examples:
      >>> import jax.numpy as jnp
      >>> [x.dtype for x in promote_dtype_args(jnp.ones(1, jnp.int8), jnp.ones(1))]
      [dtype('float32'), dtype('float32')]
    """
    return list(promote_dtype(tuple(args), dtype=dtype, inexact=inexact))


__all__ = ["canonicalize_dtype", "promote_dtype", "promote_dtype_args"]
