"""Activation functions and the PReLU layer (``flax.linen.activation``).

Examples:
  >>> import jax.numpy as jnp
  >>> from plait import linen as nn
  >>> nn.relu(jnp.array([-1.0, 1.0])).tolist()
  [0.0, 1.0]
"""

from __future__ import annotations

from plait.core.nn.activations import celu as celu
from plait.core.nn.activations import elu as elu
from plait.core.nn.activations import gelu as gelu
from plait.core.nn.activations import glu as glu
from plait.core.nn.activations import hard_sigmoid as hard_sigmoid
from plait.core.nn.activations import hard_silu as hard_silu
from plait.core.nn.activations import hard_swish as hard_swish
from plait.core.nn.activations import hard_tanh as hard_tanh
from plait.core.nn.activations import leaky_relu as leaky_relu
from plait.core.nn.activations import log_sigmoid as log_sigmoid
from plait.core.nn.activations import log_softmax as log_softmax
from plait.core.nn.activations import logsumexp as logsumexp
from plait.core.nn.activations import normalize as normalize
from plait.core.nn.activations import one_hot as one_hot
from plait.core.nn.activations import relu as relu
from plait.core.nn.activations import relu6 as relu6
from plait.core.nn.activations import selu as selu
from plait.core.nn.activations import sigmoid as sigmoid
from plait.core.nn.activations import silu as silu
from plait.core.nn.activations import soft_sign as soft_sign
from plait.core.nn.activations import softmax as softmax
from plait.core.nn.activations import softplus as softplus
from plait.core.nn.activations import standardize as standardize
from plait.core.nn.activations import swish as swish
from plait.core.nn.activations import tanh as tanh

from ._activation import PReLU as PReLU

__all__ = [
    "celu",
    "elu",
    "gelu",
    "glu",
    "hard_sigmoid",
    "hard_silu",
    "hard_swish",
    "hard_tanh",
    "leaky_relu",
    "log_sigmoid",
    "log_softmax",
    "logsumexp",
    "normalize",
    "one_hot",
    "PReLU",
    "relu",
    "relu6",
    "selu",
    "sigmoid",
    "silu",
    "soft_sign",
    "softmax",
    "softplus",
    "standardize",
    "swish",
    "tanh",
]
