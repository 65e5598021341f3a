"""Dtype helpers with Linen's calling convention (``flax.linen.dtypes``).

Examples:
  >>> import jax.numpy as jnp
  >>> from plait.linen.layers import dtypes
  >>> [x.dtype for x in dtypes.promote_dtype(jnp.ones(1, jnp.int32), jnp.ones(1))]
  [dtype('float32'), dtype('float32')]
"""

from __future__ import annotations

from plait.core.nn.dtypes import canonicalize_dtype as canonicalize_dtype

from ._dtypes import promote_dtype as promote_dtype

__all__ = [
    "canonicalize_dtype",
    "promote_dtype",
]
