"""PReLU, the one activation with a learned parameter."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from plait.core.nn import initializers

from ._base import Module, compact


class PReLU(Module):
    """Leaky ReLU whose negative slope is a learned scalar ``negative_slope``.

    Attributes:
      param_dtype: the dtype of the slope.
      negative_slope_init: the slope's initial value.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from plait import linen as nn
      >>> layer = nn.PReLU(negative_slope_init=0.1)
      >>> x = jnp.array([-2.0, 3.0])
      >>> layer.apply(layer.init(jax.random.key(0), x), x).tolist()
      [-0.20000000298023224, 3.0]
    """

    param_dtype: Any = jnp.float32
    negative_slope_init: float = 0.01

    @compact
    def __call__(self, inputs: Any) -> Any:
        """``inputs`` where non-negative, ``negative_slope * inputs`` elsewhere."""
        slope = self.param(
            "negative_slope",
            initializers.constant(self.negative_slope_init),
            (),
            self.param_dtype,
        )
        return jnp.where(inputs >= 0, inputs, jnp.asarray(slope, inputs.dtype) * inputs)
