"""``eval_shape``: the shapes of a stateful function's outputs, without computing them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import jax

from .._lift import resolve_graph_updates
from .._lift import StaticBox, lift, resolve_graph_mode
from ._common import unbind

__all__ = ["eval_shape"]

A = TypeVar("A")


def eval_shape(f: Callable[..., A], *args: Any, graph: bool | None = None,
               graph_updates: bool | None = None, **kwargs: Any) -> A:
    """Runs ``f`` abstractly: objects it returns hold ``jax.ShapeDtypeStruct`` values.

    Nothing is allocated or computed, and the arguments are left untouched (input objects
    returned by ``f`` come back as themselves).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from plait.core import Object, Param, eval_shape
        >>> class Big(Object):
        ...     def __init__(self):
        ...         self.w = Param(jnp.zeros((4096, 4096)))
        >>> abstract = eval_shape(Big)
        >>> abstract.w[...]
        ShapeDtypeStruct(shape=(4096, 4096), dtype=float32)
    """
    f, bound_self = unbind(f)
    if bound_self is not None:
        args = (bound_self, *args)
    lifted = lift(
        args, kwargs, prefix=None, graph=resolve_graph_mode(graph),
        graph_updates=resolve_graph_updates(graph_updates), transform="eval_shape",
    )
    sk = lifted.skeleton

    def pure(var_values: list[Any], leaf_values: list[Any]) -> Any:
        call = sk.enter(var_values, leaf_values)
        out = f(*call.args, **call.kwargs)
        in_values, out_values, out_leaves, info, _, _ = call.exit(out)
        return out_values, out_leaves, StaticBox(info)

    out_values, out_leaves, box = jax.eval_shape(pure, lifted.values(), lifted.leaves)
    return lifted.build_output(box.value, out_values, out_leaves, None)  # type: ignore[no-any-return]
