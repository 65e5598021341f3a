"""Parameter initializers (the names of ``flax.linen.initializers`` / ``flax.nnx.initializers``).

Every initializer is a function ``init(key, shape, dtype=jnp.float32) -> Array``. The
factories below return such functions; ``zeros`` and ``ones`` are initializers themselves.
They are JAX's own (``jax.nn.initializers``), so numbers drawn here are bit-identical to
the ones Flax draws for the same key, shape and dtype.

Examples:
  >>> import jax, jax.numpy as jnp
  >>> from plait.core.nn import initializers
  >>> init = initializers.lecun_normal()
  >>> init(jax.random.key(0), (3, 4)).shape
  (3, 4)
  >>> initializers.zeros_init()(jax.random.key(0), (2,), jnp.float32)
  Array([0., 0.], dtype=float32)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Union

from jax.nn import initializers as _jax_init

#: Anything that can be called as ``init(key, shape, dtype)`` and returns an array.
Initializer = Union[_jax_init.Initializer, Callable[..., Any]]  # noqa: UP007

constant = _jax_init.constant
delta_orthogonal = _jax_init.delta_orthogonal
glorot_normal = _jax_init.glorot_normal
glorot_uniform = _jax_init.glorot_uniform
he_normal = _jax_init.he_normal
he_uniform = _jax_init.he_uniform
kaiming_normal = _jax_init.kaiming_normal
kaiming_uniform = _jax_init.kaiming_uniform
lecun_normal = _jax_init.lecun_normal
lecun_uniform = _jax_init.lecun_uniform
normal = _jax_init.normal
ones = _jax_init.ones
orthogonal = _jax_init.orthogonal
truncated_normal = _jax_init.truncated_normal
uniform = _jax_init.uniform
variance_scaling = _jax_init.variance_scaling
xavier_normal = _jax_init.xavier_normal
xavier_uniform = _jax_init.xavier_uniform
zeros = _jax_init.zeros


def zeros_init() -> Initializer:
    """Returns an initializer that fills the array with zeros.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> zeros_init()(jax.random.key(0), (2, 2), jnp.float32).tolist()
      [[0.0, 0.0], [0.0, 0.0]]
    """
    return zeros


def ones_init() -> Initializer:
    """Returns an initializer that fills the array with ones.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> ones_init()(jax.random.key(0), (3,), jnp.float32).tolist()
      [1.0, 1.0, 1.0]
    """
    return ones


__all__ = [
    "Initializer",
    "constant",
    "delta_orthogonal",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
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
