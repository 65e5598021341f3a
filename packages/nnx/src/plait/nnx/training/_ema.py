"""Exponential moving average of a model's Variables."""

from __future__ import annotations

from typing import Any, TypeVar

import jax
import jax.numpy as jnp
from plait.core import Object, Variable, merge, merge_state, split, state

A = TypeVar("A")


def _is_inexact(path, x) -> bool:
    """Default EMA filter: Variables holding floating point or complex values."""
    if not isinstance(x, Variable):
        return False
    dtype = getattr(x.get_value(), "dtype", None)
    if dtype is None:
        return isinstance(x.get_value(), float | complex)
    return bool(jnp.issubdtype(dtype, jnp.inexact))


def _fresh_copies(tree):
    """New Variables (same type and metadata) holding copies of the values."""
    return jax.tree.map(
        lambda v: type(v)(jnp.copy(v.get_value()), **v.get_metadata()),
        tree,
        is_leaf=lambda x: isinstance(x, Variable),
    )


class EMA(Object):
    """Shadow copy of Variables updated as ``ema = decay * ema + (1 - decay) * new``.

    Args:
      params: a model (or any graph node / State) whose Variables are tracked.
      decay: weight of the old average in each update.
      only: filter of the tracked Variables; by default every Variable with a floating
        point or complex value (integer RNG counts and step counters are left out).
      graph: graph-mode switch forwarded to ``nnx.state`` / ``nnx.split``.

    Example:
      >>> import jax.numpy as jnp
      >>> from plait import nnx
      >>> class Bias(nnx.Module):
      ...   def __init__(self):
      ...     self.b = nnx.Param(jnp.zeros(2))
      >>> model = Bias()
      >>> ema = nnx.EMA(model, decay=0.5)
      >>> model.b[...] = jnp.ones(2)
      >>> ema.update(model)
      >>> ema.apply_to(model).b[...].tolist()
      [0.5, 0.5]
    """

    def __init__(
        self, params: Any, decay: float, *, only: Any = _is_inexact, graph: bool | None = None
    ):
        self.graph = graph
        self.decay = decay
        self.filter = only
        self.params = _fresh_copies(state(params, only, graph=graph))

    def update(self, updates: Any) -> None:
        """Moves the average towards ``updates`` (same structure as the tracked params)."""
        new = state(updates, self.filter, graph=self.graph)

        def blend(ema: Variable, value: Any) -> None:
            ema.set_value(self.decay * ema.get_value() + (1.0 - self.decay) * value)

        jax.tree.map(
            blend,
            self.params,
            jax.tree.map(lambda v: v.get_value(), new, is_leaf=lambda x: isinstance(x, Variable)),
            is_leaf=lambda x: isinstance(x, Variable),
        )

    def apply_to(self, model: A) -> A:
        """A new model like ``model`` whose tracked Variables are the EMA's own.

        Later ``update`` calls show through the returned model (it shares the EMA's
        Variables); untracked state is copied from ``model``.
        """
        graphdef, model_state = split(model, graph=self.graph)
        return merge(graphdef, merge_state(model_state, self.params))
