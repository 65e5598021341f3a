"""TrainState: step, parameters, optimizer and apply function in one pytree."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import optax
from plait.core import struct

# Collection of parameters that are overwritten by their "gradient" instead of being
# updated by the optimizer (used by fp8 scaling state).
OVERWRITE_WITH_GRADIENT = "_overwrite_with_gradient"


class TrainState(struct.PyTreeNode):
    """A simple training state: ``step``, ``params``, ``opt_state``; ``apply_fn`` and the
    optax ``tx`` are static fields.

    Subclass it to add fields (e.g. ``batch_stats``); ``create`` and ``apply_gradients``
    forward extra keyword arguments to the new state.

    Examples:
        >>> import jax, jax.numpy as jnp, optax
        >>> from plait.linen.training.train_state import TrainState
        >>> state = TrainState.create(apply_fn=lambda p, x: p['w'] * x,
        ...                           params={'w': jnp.ones(())}, tx=optax.sgd(0.1))
        >>> grads = jax.grad(lambda p: state.apply_fn(p, 2.0))(state.params)
        >>> state = state.apply_gradients(grads=grads)
        >>> int(state.step), round(float(state.params['w']), 4)
        (1, 0.8)
    """

    step: int | jax.Array
    apply_fn: Callable[..., Any] = struct.field(pytree_node=False)
    params: Any = struct.field(pytree_node=True)
    tx: optax.GradientTransformation = struct.field(pytree_node=False)
    opt_state: optax.OptState = struct.field(pytree_node=True)

    def apply_gradients(self, *, grads: Any, **kwargs: Any) -> TrainState:
        """One optimizer step: ``step + 1``, new params and optimizer state.

        Args:
            grads: gradients with the structure of ``params``.
            **kwargs: other fields to replace in the returned state.
        """
        overwrite = isinstance(grads, dict) and OVERWRITE_WITH_GRADIENT in grads
        grads_opt = grads["params"] if overwrite else grads
        params_opt = self.params["params"] if overwrite else self.params
        updates, new_opt_state = self.tx.update(grads_opt, self.opt_state, params_opt)
        new_params_opt = optax.apply_updates(params_opt, updates)
        if overwrite:
            new_params = {
                "params": new_params_opt,
                OVERWRITE_WITH_GRADIENT: grads[OVERWRITE_WITH_GRADIENT],
            }
        else:
            new_params = new_params_opt
        return self.replace(
            step=self.step + 1, params=new_params, opt_state=new_opt_state, **kwargs
        )

    @classmethod
    def create(
        cls,
        *,
        apply_fn: Callable[..., Any],
        params: Any,
        tx: optax.GradientTransformation,
        **kwargs: Any,
    ) -> TrainState:
        """A state at step 0 with ``tx.init(params)`` as optimizer state."""
        overwrite = isinstance(params, dict) and OVERWRITE_WITH_GRADIENT in params
        opt_state = tx.init(params["params"] if overwrite else params)
        return cls(step=0, apply_fn=apply_fn, params=params, tx=tx, opt_state=opt_state, **kwargs)
