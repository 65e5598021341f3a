"""Activation functions (the names Flax re-exports from ``jax.nn`` and ``jax.numpy``).

These are JAX's own functions, so a model ported from Flax computes the same numbers.
``normalize`` is Linen's older name for ``standardize``; ``swish`` / ``hard_swish`` are
the same functions as ``silu`` / ``hard_silu``.

Examples:
  >>> import jax.numpy as jnp
  >>> from plait.core.nn import activations
  >>> activations.relu(jnp.array([-1.0, 2.0])).tolist()
  [0.0, 2.0]
"""

from __future__ import annotations

import jax

celu = jax.nn.celu
elu = jax.nn.elu
gelu = jax.nn.gelu
glu = jax.nn.glu
hard_sigmoid = jax.nn.hard_sigmoid
hard_silu = jax.nn.hard_silu
hard_swish = jax.nn.hard_swish
hard_tanh = jax.nn.hard_tanh
identity = jax.nn.identity
leaky_relu = jax.nn.leaky_relu
log_sigmoid = jax.nn.log_sigmoid
log_softmax = jax.nn.log_softmax
logsumexp = jax.nn.logsumexp
mish = jax.nn.mish
one_hot = jax.nn.one_hot
relu = jax.nn.relu
relu6 = jax.nn.relu6
selu = jax.nn.selu
sigmoid = jax.nn.sigmoid
silu = jax.nn.silu
soft_sign = jax.nn.soft_sign
softmax = jax.nn.softmax
softplus = jax.nn.softplus
sparse_plus = jax.nn.sparse_plus
sparse_sigmoid = jax.nn.sparse_sigmoid
squareplus = jax.nn.squareplus
standardize = jax.nn.standardize
normalize = jax.nn.standardize
swish = jax.nn.swish
tanh = jax.nn.tanh

__all__ = [
    "celu",
    "elu",
    "gelu",
    "glu",
    "hard_sigmoid",
    "hard_silu",
    "hard_swish",
    "hard_tanh",
    "identity",
    "leaky_relu",
    "log_sigmoid",
    "log_softmax",
    "logsumexp",
    "mish",
    "normalize",
    "one_hot",
    "relu",
    "relu6",
    "selu",
    "sigmoid",
    "silu",
    "soft_sign",
    "softmax",
    "softplus",
    "sparse_plus",
    "sparse_sigmoid",
    "squareplus",
    "standardize",
    "swish",
    "tanh",
]
