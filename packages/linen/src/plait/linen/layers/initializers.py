"""Parameter initializers (``flax.linen.initializers``): JAX's own, plus ``zeros_init``
and ``ones_init``.

Examples:
  >>> import jax
  >>> from plait import linen as nn
  >>> nn.initializers.lecun_normal()(jax.random.key(0), (3, 4)).shape
  (3, 4)
"""

from __future__ import annotations

from plait.core.nn.initializers import Initializer as Initializer
from plait.core.nn.initializers import constant as constant
from plait.core.nn.initializers import delta_orthogonal as delta_orthogonal
from plait.core.nn.initializers import glorot_normal as glorot_normal
from plait.core.nn.initializers import glorot_uniform as glorot_uniform
from plait.core.nn.initializers import he_normal as he_normal
from plait.core.nn.initializers import he_uniform as he_uniform
from plait.core.nn.initializers import kaiming_normal as kaiming_normal
from plait.core.nn.initializers import kaiming_uniform as kaiming_uniform
from plait.core.nn.initializers import lecun_normal as lecun_normal
from plait.core.nn.initializers import lecun_uniform as lecun_uniform
from plait.core.nn.initializers import normal as normal
from plait.core.nn.initializers import ones as ones
from plait.core.nn.initializers import ones_init as ones_init
from plait.core.nn.initializers import orthogonal as orthogonal
from plait.core.nn.initializers import truncated_normal as truncated_normal
from plait.core.nn.initializers import uniform as uniform
from plait.core.nn.initializers import variance_scaling as variance_scaling
from plait.core.nn.initializers import xavier_normal as xavier_normal
from plait.core.nn.initializers import xavier_uniform as xavier_uniform
from plait.core.nn.initializers import zeros as zeros
from plait.core.nn.initializers import zeros_init as zeros_init

__all__ = [
    "constant",
    "delta_orthogonal",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "Initializer",
    "kaiming_normal",
    "kaiming_uniform",
    "lecun_normal",
    "lecun_uniform",
    "normal",
    "ones",
    "ones_init",
    "orthogonal",
    "truncated_normal",
    "uniform",
    "variance_scaling",
    "xavier_normal",
    "xavier_uniform",
    "zeros",
    "zeros_init",
]
