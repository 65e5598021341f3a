"""Pooling over spatial axes, channels-last (``flax.linen.pooling``).

Examples:
  >>> import jax.numpy as jnp
  >>> from plait import linen as nn
  >>> nn.max_pool(jnp.arange(4.0).reshape(1, 4, 1), (2,), strides=(2,))[0, :, 0].tolist()
  [1.0, 3.0]
"""

from __future__ import annotations

from plait.core.nn.pooling import avg_pool as avg_pool
from plait.core.nn.pooling import max_pool as max_pool
from plait.core.nn.pooling import min_pool as min_pool
from plait.core.nn.pooling import pool as pool

__all__ = [
    "avg_pool",
    "max_pool",
    "min_pool",
    "pool",
]
