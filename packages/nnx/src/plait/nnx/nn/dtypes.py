"""Dtype helpers of the layers (``flax.nnx.nn.dtypes``): shared with Linen via
``plait.core.nn.dtypes``.

Examples:
  >>> import jax.numpy as jnp
  >>> from plait.nnx.nn import dtypes
  >>> dtypes.canonicalize_dtype(jnp.ones(1, jnp.int32))
  dtype('float32')
"""

from plait.core.nn.dtypes import canonicalize_dtype as canonicalize_dtype
from plait.core.nn.dtypes import promote_dtype as promote_dtype
