"""PReLU, the one activation with a parameter."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import jax
import jax.numpy as jnp
from plait.core import Param
from plait.core.nn import dtypes

from .._module import Module


class PReLU(Module):
    """Parametric ReLU: ``x if x >= 0 else negative_slope * x`` with a learned slope.

    Examples:
      >>> import jax.numpy as jnp
      >>> from plait import nnx
      >>> nnx.PReLU(0.1)(jnp.array([-2.0, 3.0])).tolist()
      [-0.20000000298023224, 3.0]
    """

    def __init__(
        self,
        negative_slope_init: float = 0.01,
        *,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        promote_dtype: Any = dtypes.promote_dtype,
        negative_slope_metadata: Mapping[str, Any] = MappingProxyType({}),
    ):
        self.negative_slope = Param(
            jnp.asarray(negative_slope_init, dtype=param_dtype), **dict(negative_slope_metadata)
        )
        self.negative_slope_init = negative_slope_init
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.promote_dtype = promote_dtype

    def __call__(self, inputs: jax.Array) -> jax.Array:
        """Applies the parametric ReLU elementwise."""
        inputs, slope = self.promote_dtype((inputs, self.negative_slope[...]), dtype=self.dtype)
        return jnp.where(inputs >= 0, inputs, slope * inputs)
