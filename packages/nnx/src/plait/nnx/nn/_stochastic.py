"""Dropout (Flax NNX ``nnx.nn.stochastic``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from plait.core import Rngs, RngStream

from .._module import Module
from ._common import first_from


def _own_stream(rngs: Any, rng_collection: str) -> Any:
    """A stream private to the layer, forked from the given one (None stays None)."""
    if rngs is None:
        return None
    if isinstance(rngs, Rngs):
        return rngs[rng_collection].fork()
    if isinstance(rngs, RngStream):
        return rngs.fork()
    raise TypeError(
        f"Dropout(rngs=...) expects Rngs, an RngStream or None, got {type(rngs).__name__}. "
        "Fix: pass rngs=nnx.Rngs(dropout=0), or pass the rngs to the call instead."
    )


def _draw_key(rngs: Any, rng_collection: str) -> jax.Array:
    if isinstance(rngs, Rngs):
        return rngs[rng_collection]()
    if isinstance(rngs, RngStream):
        return rngs()
    if isinstance(rngs, jax.Array):
        return rngs
    raise TypeError(
        f"Dropout: rngs must be Rngs, an RngStream or a PRNG key array, got {type(rngs).__name__}."
    )


class Dropout(Module):
    """Randomly zeroes inputs with probability ``rate`` and scales the rest by ``1/(1-rate)``.

    Active when ``deterministic`` is False (``model.train()``); the identity otherwise
    (``model.eval()``). The random key comes from the call's ``rngs`` or, failing that,
    from a stream forked at construction from ``rngs[rng_collection]``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from plait import nnx
      >>> drop = nnx.Dropout(0.5, rngs=nnx.Rngs(dropout=0))
      >>> y = drop(jnp.ones((1000,)))
      >>> sorted(set(y.tolist()))
      [0.0, 2.0]
      >>> drop.eval(); bool((drop(jnp.ones(3)) == 1).all())
      True
    """

    def __init__(
        self,
        rate: float,
        *,
        broadcast_dims: Sequence[int] = (),
        deterministic: bool | None = False,
        rng_collection: str = "dropout",
        rngs: Rngs | RngStream | None = None,
    ):
        self.rate = rate
        self.broadcast_dims = tuple(broadcast_dims)
        self.deterministic = deterministic
        self.rng_collection = rng_collection
        self.rngs = _own_stream(rngs, rng_collection)

    def __call__(
        self,
        inputs: jax.Array,
        *,
        deterministic: bool | None = None,
        rngs: Rngs | RngStream | jax.Array | None = None,
    ) -> jax.Array:
        """Applies dropout (or returns ``inputs`` unchanged when deterministic)."""
        deterministic = first_from(
            deterministic,
            self.deterministic,
            error_msg=(
                "Dropout: deterministic is None both in the call and on the module. Pass "
                "deterministic=True/False, or call model.train() / model.eval()."
            ),
        )
        if self.rate == 0.0 or deterministic:
            return inputs
        if self.rate == 1.0:  # avoid 0 * inf in the gradient
            return jnp.zeros_like(inputs)
        source = first_from(
            rngs,
            self.rngs,
            error_msg=(
                "Dropout is active (deterministic=False) but has no random stream: pass "
                "rngs=nnx.Rngs(dropout=...) to the constructor or rngs=... to the call, or "
                "call model.eval() to turn dropout off."
            ),
        )
        key = _draw_key(source, self.rng_collection)
        keep_prob = 1.0 - self.rate
        mask_shape = list(inputs.shape)
        for dim in self.broadcast_dims:
            mask_shape[dim] = 1
        keep = jax.random.bernoulli(key, p=keep_prob, shape=mask_shape)
        keep = jnp.broadcast_to(keep, inputs.shape)
        return lax.select(keep, inputs / keep_prob, jnp.zeros_like(inputs))

    def set_view(self, deterministic: bool | None = None) -> None:
        """Sets ``deterministic`` (None leaves it unchanged)."""
        if deterministic is not None:
            self.deterministic = deterministic
