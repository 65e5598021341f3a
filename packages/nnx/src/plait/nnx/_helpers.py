"""``TrainState``: the functional-API train state (graphdef, params, opt_state, step, tx)."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import jax
import jax.numpy as jnp
import optax
from plait.core import GraphDef, State, struct

M = TypeVar("M")
TS = TypeVar("TS", bound="TrainState")


class TrainState(struct.PyTreeNode, Generic[M]):  # noqa: UP046 - Flax-style TypeVar generics
    """A struct train state for the functional (split/merge) style.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> from plait import nnx
      >>> class Scale(nnx.Module):
      ...   def __init__(self):
      ...     self.w = nnx.Param(jnp.ones(2))
      ...   def __call__(self, x):
      ...     return self.w * x
      >>> graphdef, params = nnx.split(Scale())
      >>> ts = nnx.TrainState.create(graphdef, params=params, tx=optax.sgd(0.5))
      >>> y, _ = ts.apply("params")(jnp.ones(2))
      >>> grads = jax.tree.map(jnp.ones_like, ts.params)
      >>> ts.apply_gradients(grads).params["w"][...].tolist()
      [0.5, 0.5]
    """

    graphdef: GraphDef[M] = struct.field(pytree_node=False)
    params: State
    opt_state: Any
    step: jax.Array
    tx: optax.GradientTransformation = struct.field(pytree_node=False)

    @classmethod
    def create(
        cls,
        graphdef: GraphDef[M],
        *,
        params: State,
        tx: optax.GradientTransformation,
        step: int = 0,
        **kwargs,
    ):
        return cls(
            graphdef=graphdef,
            params=params,
            opt_state=tx.init(params),
            step=jnp.asarray(step),
            tx=tx,
            **kwargs,
        )

    def apply(self, state: State | str, *states: State | str):
        """``apply('params')(*args)`` -> ``(output, (graphdef, new_state))``.

        Strings name attributes of this train state that hold a State.
        """
        resolved = []
        for s in (state, *states):
            if isinstance(s, str):
                value = getattr(self, s)
                if not isinstance(value, State):
                    raise TypeError(
                        f"TrainState.apply({s!r}): attribute {s!r} is a "
                        f"{type(value).__name__}, not a State."
                    )
                s = value
            resolved.append(s)
        return self.graphdef.apply(*resolved)

    def apply_gradients(self: TS, grads: State, **kwargs) -> TS:
        """One optax step: new ``params``, ``opt_state`` and ``step + 1``."""
        updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
        params = optax.apply_updates(self.params, updates)
        return self.replace(params=params, opt_state=opt_state, step=self.step + 1, **kwargs)
