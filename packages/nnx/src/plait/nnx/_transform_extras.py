"""Transforms Flax has on ``flax.nnx`` beyond plait.core's set: ``checkify``,
``make_jaxpr`` and ``transform_metadata``.

``checkify`` and ``make_jaxpr`` lift the JAX transform the simple way: the graph nodes
among the arguments are split into one State, the function runs on a freshly merged copy,
and (for ``checkify``) the copy's new Variable values are written back into the
arguments' own Variables. Structural changes inside are not propagated, and outputs must
be JAX values (no graph nodes).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
from jax.experimental import checkify as checkify_lib
from plait.core import (
    PARTITION_NAME,
    Variable,
    add_axis,
    is_graph_node,
    iter_graph,
    remove_axis,
    split,
    update,
)
from plait.core import merge as _merge


class _MissingType:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _MissingType()


def _split_args(args: tuple, kwargs: dict, static_argnums: Sequence[int] = ()):
    static = {i: a for i, a in enumerate(args) if i in static_argnums}
    dynamic = tuple(a for i, a in enumerate(args) if i not in static_argnums)
    graphdef, state = split((dynamic, kwargs))

    def rebuild(state):
        dyn, kw = _merge(graphdef, state)
        it = iter(dyn)
        full = tuple(static[i] if i in static else next(it) for i in range(len(args)))
        return full, kw

    return state, rebuild


def checkify(
    f: Callable[..., Any],
    errors: frozenset = checkify_lib.user_checks,
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> Callable[..., Any]:
    """``jax.experimental.checkify.checkify`` for functions taking graph nodes.

    Returns ``(error, output)``; Variable updates made by ``f`` are written back.

    Example:
      >>> import jax.numpy as jnp
      >>> from jax.experimental import checkify
      >>> from plait import nnx
      >>> class Counter(nnx.Module):
      ...   def __init__(self):
      ...     self.n = nnx.BatchStat(jnp.array(0))
      >>> def bump(c, x):
      ...   checkify.check(x > 0, "x must be positive")
      ...   c.n[...] += 1
      ...   return x
      >>> c = Counter()
      >>> err, _ = nnx.checkify(bump)(c, -1.0)
      >>> err.get(), int(c.n[...])
      ('x must be positive (`check` failed)', 1)
    """
    del graph, graph_updates

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        state, rebuild = _split_args(args, kwargs)

        def pure(state):
            a, k = rebuild(state)
            out = f(*a, **k)
            return out, split((a, k))[1]

        error, (out, new_state) = checkify_lib.checkify(pure, errors=errors)(state)
        update((args, kwargs), new_state)
        return error, out

    return wrapper


def make_jaxpr(
    f: Callable[..., Any] | Any = MISSING,
    *,
    graph: bool | None = None,
    graph_updates: bool | None = None,
    static_argnums: int | Sequence[int] = (),
):
    """``jax.make_jaxpr`` for functions taking graph nodes.

    The jaxpr's inputs are the arrays of the arguments' states (graph nodes flattened by
    path); its outputs are ``f``'s output followed by the arguments' updated state.

    Example:
      >>> import jax.numpy as jnp
      >>> from plait import nnx
      >>> class Scale(nnx.Module):
      ...   def __init__(self):
      ...     self.w = nnx.Param(jnp.ones(2))
      >>> jaxpr = nnx.make_jaxpr(lambda m, x: m.w[...] * x)(Scale(), jnp.ones(2))
      >>> len(jaxpr.jaxpr.invars)
      2
    """
    if f is MISSING:
        return functools.partial(
            make_jaxpr, graph=graph, graph_updates=graph_updates, static_argnums=static_argnums
        )
    statics = (static_argnums,) if isinstance(static_argnums, int) else tuple(static_argnums)

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        state, rebuild = _split_args(args, kwargs, statics)

        def pure(state):
            a, k = rebuild(state)
            out = f(*a, **k)
            dynamic = tuple(x for i, x in enumerate(a) if i not in statics)
            return out, split((dynamic, k))[1]

        return jax.make_jaxpr(pure)(state)

    return wrapper


def _variables(tree: Any) -> list[Variable]:
    found, seen = [], set()
    for leaf in jax.tree.leaves(tree, is_leaf=lambda x: is_graph_node(x) or isinstance(x, Variable)):
        nodes = iter_graph(leaf) if is_graph_node(leaf) else [((), leaf)]
        for _, v in nodes:
            if isinstance(v, Variable) and id(v) not in seen:
                seen.add(id(v))
                found.append(v)
    return found


def _per_argument(axes: Any, n: int) -> tuple:
    if isinstance(axes, int) or axes is None:
        return (axes,) * n
    axes = tuple(axes)
    if len(axes) != n:
        raise ValueError(
            f"transform_metadata: got {len(axes)} axes for {n} arguments.\nFix: pass one "
            "axis (or None) per positional argument, or a single int for all of them."
        )
    return axes


def transform_metadata(
    f: Callable[..., Any] | Any = MISSING,
    *,
    in_axes: Any = 0,
    out_axes: Any = 0,
    partition: str | None,
    graph: bool | None = None,
):
    """Keeps Variables' ``sharding_names`` right inside a ``vmap`` / ``scan`` body.

    On entry, the axis ``in_axes`` (per argument) that the outer transform maps over is
    removed from the partition metadata of the arguments' Variables; on exit it is put
    back (named ``partition``) for the arguments and inserted at ``out_axes`` for
    Variables in the outputs. This is the tree-mode replacement of vmap/scan's
    ``transform_metadata={nnx.PARTITION_NAME: ...}`` argument.

    Example:
      >>> import jax.numpy as jnp
      >>> from plait import nnx
      >>> class Layer(nnx.Module):
      ...   def __init__(self):
      ...     self.w = nnx.Param(jnp.ones((4, 3)), sharding_names=("layers", "model"))
      >>> @nnx.transform_metadata(in_axes=0, partition="layers")
      ... def body(layer):
      ...   return layer.w.sharding_names
      >>> layer = Layer()
      >>> body(layer), layer.w.sharding_names
      (('model',), ('layers', 'model'))
    """
    if f is MISSING:
        return functools.partial(
            transform_metadata, in_axes=in_axes, out_axes=out_axes, partition=partition,
            graph=graph,
        )
    metadata = {PARTITION_NAME: partition}

    @functools.wraps(f)
    def wrapper(*args):
        axes = _per_argument(in_axes, len(args))
        touched = [(ax, _variables(a)) for a, ax in zip(args, axes, strict=True) if ax is not None]
        for ax, variables in touched:
            remove_axis(variables, ax, metadata)
        try:
            out = f(*args)
        finally:
            for ax, variables in touched:
                add_axis(variables, ax, metadata)
        if isinstance(out_axes, int):
            new = [v for v in _variables(out) if all(v is not w for _, vs in touched for w in vs)]
            if new:
                add_axis(new, out_axes, metadata)
        return out

    return wrapper
