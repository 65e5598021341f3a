"""Optax optimizers whose state lives in Variables, so ``nnx.jit`` carries it like a model.

``Optimizer(model, tx, wrt=Param)`` keeps the optax state of the Variables selected by
``wrt``; ``update(model, grads)`` runs ``tx.update`` on plain arrays, applies the updates
to the model's own Variables in place and bumps ``step``. ``ModelAndOptimizer`` is the
older form that also keeps the model and takes ``update(grads)``.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import jax
import jax.numpy as jnp
import optax
from plait.core import Object, Param, State, Variable, iter_graph, to_predicate

from .._errors import OptimizerUpdateError

M = TypeVar("M")


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()


class OptState(Variable):
    """Variable type of any optimizer state (step count, moments...)."""


class OptArray(OptState):
    """Optimizer state leaf that was a plain array in the optax state."""


class OptVariable(OptState):
    """Optimizer state leaf that was a Variable (its metadata, e.g. sharding, is kept)."""


def _is_variable(x: Any) -> bool:
    return isinstance(x, Variable)


def to_opt_state(tree):
    """Wraps every leaf of an optax state in an ``OptState`` Variable.

    Arrays become ``OptArray``; Variables become ``OptVariable`` with the same metadata,
    so a moment estimate is sharded like the parameter it tracks.
    """

    def wrap(x):
        if isinstance(x, Variable):
            return OptVariable(x.get_value(), **x.get_metadata())
        return OptArray(x)

    return jax.tree.map(wrap, tree, is_leaf=_is_variable)


def _values(tree):
    """The same tree with every Variable replaced by its value."""
    return jax.tree.map(lambda v: v.get_value(), tree, is_leaf=_is_variable)


def _flat_variables(model: Any, wrt) -> dict[tuple, Variable]:
    """The model's own Variables matched by ``wrt``, by path (not copies)."""
    predicate = to_predicate(wrt)
    return {
        tuple(path): node
        for path, node in iter_graph(model)
        if isinstance(node, Variable) and predicate(tuple(path), node)
    }


def _flat_leaves(grads: Any) -> dict[tuple, Any]:
    """``{path: array}`` of a gradient State (or any nested mapping / pytree)."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(grads, is_leaf=_is_variable)
    out = {}
    for key_path, leaf in leaves:
        path = tuple(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k))) for k in key_path)
        out[path] = leaf.get_value() if isinstance(leaf, Variable) else leaf
    return out


def _path_text(path: tuple) -> str:
    return "/".join(str(p) for p in path) or "<root>"


class Optimizer(Object, Generic[M]):  # noqa: UP046 - Flax-style TypeVar generics
    """Optax optimizer over the Variables of a model selected by ``wrt``.

    Attributes:
      step: ``OptState`` holding the number of updates applied (uint32).
      tx: the optax ``GradientTransformation``.
      opt_state: the optax state, each leaf wrapped in an ``OptState`` Variable.
      wrt: the filter naming the optimized Variables.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> from plait import nnx
      >>> class Scale(nnx.Module):
      ...   def __init__(self):
      ...     self.w = nnx.Param(jnp.array([1.0, 2.0]))
      ...   def __call__(self, x):
      ...     return self.w * x
      >>> model = Scale()
      >>> optimizer = nnx.Optimizer(model, optax.sgd(0.5), wrt=nnx.Param)
      >>> grads = nnx.grad(lambda m: m(jnp.ones(2)).sum())(model)
      >>> updates = optimizer.update(model, grads)
      >>> model.w[...].tolist(), int(optimizer.step[...])
      ([0.5, 1.5], 1)
    """

    def __init__(
        self,
        model: M,
        tx: optax.GradientTransformation,
        *,
        wrt: Any = Param,
        graph: bool | None = None,
    ):
        self.step = OptState(jnp.array(0, dtype=jnp.uint32))
        self.tx = tx
        self.wrt = wrt
        variables = _flat_variables(model, wrt)
        if not variables:
            raise OptimizerUpdateError(
                f"Optimizer(wrt={wrt!r}) found no Variables to optimize in "
                f"{type(model).__name__}.\nFix: pass the filter of the Variables your "
                "gradients are taken for (nnx.Param by default)."
            )
        # optax maps over the Variables' values (Variables are pytree nodes), so every moment
        # comes back as a Variable with its parameter's metadata, e.g. sharding_names.
        params = State.from_flat_path(dict(variables))
        self.opt_state = to_opt_state(tx.init(params))

    def __getattr__(self, name: str):
        # Only reached when normal lookup fails.
        if name == "model":
            raise AttributeError(
                "Optimizer has no attribute 'model': as in Flax 0.11+, Optimizer does not "
                "keep the model.\nFix: call optimizer.update(model, grads), or use "
                "nnx.ModelAndOptimizer(model, tx) which keeps it and takes update(grads)."
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def update(self, model: M, grads, /, **kwargs):
        """Applies one optax step to the ``wrt`` Variables of ``model``, in place.

        Args:
          model: the model whose Variables are updated (the one the optimizer was built
            for, or one with the same structure).
          grads: gradients for the ``wrt`` Variables, usually the State returned by
            ``nnx.grad``; extra entries (Variables outside ``wrt``) are ignored.
          **kwargs: forwarded to ``tx.update`` (``GradientTransformationExtraArgs``,
            e.g. ``value=`` / ``grad=`` / ``value_fn=`` for line searches).

        Returns:
          The optax updates that were added to the parameters (a State of arrays).
        """
        variables = _flat_variables(model, self.wrt)
        grad_leaves = _flat_leaves(grads)
        missing = [p for p in variables if p not in grad_leaves]
        if missing:
            shown = ", ".join(_path_text(p) for p in missing[:5])
            raise OptimizerUpdateError(
                f"Optimizer.update(): no gradient for {len(missing)} optimized Variable(s): "
                f"{shown}{' ...' if len(missing) > 5 else ''}.\nFix: take the gradient with "
                "respect to the same Variables as the optimizer's wrt, e.g. "
                "nnx.grad(loss, argnums=nnx.DiffState(0, wrt))."
            )
        for path, var in variables.items():
            g = grad_leaves[path]
            if jnp.shape(g) != jnp.shape(var.get_value()):
                raise OptimizerUpdateError(
                    f"Optimizer.update(): gradient for '{_path_text(path)}' has shape "
                    f"{jnp.shape(g)}, but the Variable has shape {jnp.shape(var.get_value())}."
                    "\nFix: pass gradients of this model (same structure and shapes)."
                )
        params = State.from_flat_path({p: v.get_value() for p, v in variables.items()})
        grads_state = State.from_flat_path({p: grad_leaves[p] for p in variables})
        updates, new_opt_state = self.tx.update(
            grads_state, _values(self.opt_state), params, **kwargs
        )
        new_params = optax.apply_updates(params, updates)
        flat_new = _flat_leaves(new_params)
        for path, var in variables.items():
            var.set_value(flat_new[path])
        jax.tree.map(
            lambda var, value: var.set_value(value),
            self.opt_state,
            new_opt_state,
            is_leaf=_is_variable,
        )
        self.step.set_value(self.step.get_value() + 1)
        return updates


class ModelAndOptimizer(Optimizer[M]):
    """An :class:`Optimizer` that also keeps the model: ``update(grads)``.

    This is the pre-0.11 Flax interface; prefer ``Optimizer`` with
    ``update(model, grads)``.
    """

    def __init__(self, model: M, tx: optax.GradientTransformation, *, wrt: Any = Param):
        super().__init__(model, tx, wrt=wrt)
        self.model = model

    def update(self, grads, /, **kwargs):  # type: ignore[override]
        return super().update(self.model, grads, **kwargs)
