"""Dropout."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from ._base import Module, compact, merge_param
from ._errors import LayerConfigError


class Dropout(Module):
    """Randomly zeroes inputs with probability ``rate`` and rescales the rest.

    Kept entries are divided by ``1 - rate`` so the expectation is unchanged. The
    random key comes from the ``rng_collection`` stream (``'dropout'``): pass
    ``rngs={'dropout': key}`` to ``apply``.

    Attributes:
      rate: the probability of dropping an entry.
      broadcast_dims: axes along which one mask is shared (e.g. ``(1,)`` drops whole
        sequence positions).
      deterministic: if True, return the inputs unchanged; may instead be passed to
        ``__call__``.
      rng_collection: the rng stream the mask is drawn from.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from plait import linen as nn
      >>> layer = nn.Dropout(rate=0.5, deterministic=False)
      >>> y = layer.apply({}, jnp.ones((2, 4)), rngs={'dropout': jax.random.key(0)})
      >>> sorted(set(y.ravel().tolist())) in ([0.0, 2.0], [2.0], [0.0])
      True
    """

    rate: float
    broadcast_dims: Sequence[int] = ()
    deterministic: bool | None = None
    rng_collection: str = "dropout"

    @compact
    def __call__(
        self, inputs: Any, deterministic: bool | None = None, rng: jax.Array | None = None
    ) -> Any:
        """Applies dropout unless deterministic.

        Args:
          inputs: the array to drop entries from.
          deterministic: overrides the attribute when the attribute is None.
          rng: an explicit key (otherwise ``make_rng(rng_collection)``).
        """
        deterministic = merge_param("deterministic", self.deterministic, deterministic)
        if not 0.0 <= self.rate <= 1.0:
            raise LayerConfigError(f"Dropout rate must be in [0, 1], got rate={self.rate}.")
        if self.rate == 0.0 or deterministic:
            return inputs
        if self.rate == 1.0:
            return jnp.zeros_like(inputs)
        keep_prob = 1.0 - self.rate
        if rng is None:
            rng = self.make_rng(self.rng_collection)
        mask_shape = list(jnp.shape(inputs))
        for dim in self.broadcast_dims:
            mask_shape[dim] = 1
        keep = jax.random.bernoulli(rng, p=keep_prob, shape=mask_shape)
        keep = jnp.broadcast_to(keep, jnp.shape(inputs))
        return lax.select(keep, inputs / keep_prob, jnp.zeros_like(inputs))
