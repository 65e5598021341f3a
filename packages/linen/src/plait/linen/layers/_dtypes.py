"""Linen's ``promote_dtype``: arrays as separate arguments, a list back."""

from __future__ import annotations

from typing import Any

from plait.core.nn.dtypes import promote_dtype_args


def promote_dtype(*args: Any, dtype: Any = None, inexact: bool = True) -> list[Any]:
    """Casts ``args`` (arrays or None) to one dtype.

    The dtype is ``dtype`` if given, else the promotion of the arguments' dtypes
    (lifted to a floating type when ``inexact``).

    Examples:
      >>> import jax.numpy as jnp
      >>> x, none = promote_dtype(jnp.ones(2, jnp.int32), None)
      >>> x.dtype, none
      (dtype('float32'), None)
    """
    return promote_dtype_args(*args, dtype=dtype, inexact=inexact)
