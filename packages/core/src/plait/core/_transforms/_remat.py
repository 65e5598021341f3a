"""``remat`` / ``checkpoint``: ``jax.checkpoint`` for functions of stateful objects."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import jax

from .._lift import resolve_graph_updates
from .._lift import StaticBox, lift, resolve_graph_mode
from ._common import MISSING, normalize_argnums, unbind, wraps

__all__ = ["remat", "checkpoint"]

F = TypeVar("F", bound=Callable[..., Any])


def remat(
    f: F | Any = MISSING,
    *,
    prevent_cse: bool = True,
    static_argnums: int | tuple[int, ...] = (),
    policy: Callable[..., bool] | None = None,
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> Any:
    """``jax.checkpoint`` (rematerialisation) for functions of stateful objects.

    The forward activations of ``f`` are recomputed in the backward pass instead of
    stored; state updated inside is written back as usual.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from plait.core import Object, Param, remat, grad
        >>> class Lin(Object):
        ...     def __init__(self):
        ...         self.w = Param(jnp.array(2.0))
        >>> f = remat(lambda m, x: jnp.sin(m.w[...] * x))
        >>> g = grad(lambda m: f(m, 1.0))(Lin())
        >>> round(float(g['w'][...]), 4) == round(float(jnp.cos(2.0)), 4)
        True
    """
    if f is MISSING:
        return functools.partial(
            remat, prevent_cse=prevent_cse, static_argnums=static_argnums, policy=policy,
            graph=graph, graph_updates=graph_updates,
        )
    static = normalize_argnums(static_argnums)
    graph_mode = resolve_graph_mode(graph)
    updates = resolve_graph_updates(graph_updates)
    bound_f = f
    f, bound_self = unbind(f)
    if bound_self is not None:
        static = tuple(i + 1 if i >= 0 else i for i in static)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if bound_self is not None:
            args = (bound_self, *args)
        n = len(args)
        static_pos = sorted({i % n for i in static if -n <= i < n})
        dyn_args = tuple(a for i, a in enumerate(args) if i not in static_pos)
        lifted = lift(dyn_args, kwargs, prefix=None, graph=graph_mode, graph_updates=updates, transform="remat")
        sk = lifted.skeleton

        def pure(var_values: list[Any], leaf_values: list[Any]) -> Any:
            call = sk.enter(var_values, leaf_values)
            full = list(call.args)
            for pos in static_pos:
                full.insert(pos, args[pos])
            out = f(*full, **call.kwargs)
            in_values, out_values, out_leaves, info, _, _ = call.exit(out)
            return in_values, out_values, out_leaves, StaticBox(info)

        checkpointed = jax.checkpoint(pure, prevent_cse=prevent_cse, policy=policy)
        in_values, out_values, out_leaves, box = checkpointed(lifted.values(), lifted.leaves)
        return lifted.apply(box.value, in_values, out_values, out_leaves)

    return wraps(bound_f, wrapper)


checkpoint = remat
