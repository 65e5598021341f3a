"""Pytrees with graph nodes <-> pure pytrees: ``to_tree``, ``from_tree``, ``NodeStates``, ``prefix``.

These are the building blocks for writing a custom lifted transform over plain JAX
transforms: ``to_tree`` replaces every graph node in a pytree by a :class:`NodeStates`
(its GraphDef and State(s), a pytree of arrays), ``from_tree`` rebuilds the nodes. All
nodes of one call share one numbering, so shared references come back shared.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
from plait.core import GraphDef, Variable, is_graph_node, to_predicate

from ._contexts import MergeContext, SplitContext, merge_context, split_context
from ._graph_api import map as _map


class _MissingType:
    def __repr__(self) -> str:
        return "Missing"


Missing: Any = _MissingType()


@dataclasses.dataclass(frozen=True)
class NodeStates:
    """A graph node in pure form: its GraphDef (static) and one or more States (data).

    Example:
      >>> import jax.numpy as jnp
      >>> from plait import nnx
      >>> class Foo(nnx.Module):
      ...   def __init__(self):
      ...     self.w = nnx.Param(jnp.ones(2))
      >>> ns = nnx.to_tree(Foo())
      >>> isinstance(ns, nnx.NodeStates), list(ns.state)
      (True, ['w'])
    """

    _graphdef: GraphDef[Any] | None
    states: tuple[Any, ...]
    metadata: Any

    @property
    def graphdef(self) -> GraphDef[Any]:
        if self._graphdef is None:
            raise ValueError("This NodeStates holds states only (it has no GraphDef).")
        return self._graphdef

    @property
    def state(self) -> Any:
        if len(self.states) != 1:
            raise ValueError(
                f"NodeStates.state needs exactly one State, this one has {len(self.states)}; "
                "use .states."
            )
        return self.states[0]

    @classmethod
    def from_split(cls, graphdef: GraphDef[Any] | None, state: Any, /, *states: Any, metadata: Any = None):
        return cls(graphdef, (state, *states), metadata)

    @classmethod
    def from_states(cls, state: Any, *states: Any):
        return cls(None, (state, *states), None)

    @classmethod
    def from_prefixes(cls, prefixes: Iterable[Any], /, *, metadata: Any = None):
        return cls(None, tuple(prefixes), metadata)

    def replace(self, **updates) -> NodeStates:
        return dataclasses.replace(self, **updates)


def _hashable_metadata(metadata: Any) -> Any:
    try:
        hash(metadata)
    except TypeError:
        return _ById(metadata)
    return metadata


class _ById:
    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value

    def __hash__(self) -> int:
        return id(self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ById) and other.value is self.value


jax.tree_util.register_pytree_with_keys(
    NodeStates,
    lambda ns: (
        tuple((jax.tree_util.SequenceKey(i), s) for i, s in enumerate(ns.states)),
        (ns._graphdef, _hashable_metadata(ns.metadata)),
    ),
    lambda aux, children: NodeStates(
        aux[0], tuple(children), aux[1].value if isinstance(aux[1], _ById) else aux[1]
    ),
)


def _path_parts(key_path: tuple) -> tuple:
    return tuple(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k))) for k in key_path)


def default_split_fn(ctx: SplitContext, path: tuple, prefix: Any, leaf: Any) -> Any:
    """Splits one node; a filter-mapping prefix (``StateAxes``) gives one State per filter."""
    filters = getattr(prefix, "filters", None)
    if filters:
        graphdef, *states = ctx.split(leaf, *filters)
        return NodeStates.from_split(graphdef, *states, metadata=prefix)
    graphdef, state = ctx.split(leaf)
    return NodeStates.from_split(graphdef, state, metadata=prefix)


def merge_tree_node(ctx: MergeContext, path: tuple, prefix: Any, leaf: Any) -> Any:
    """Inverse of :func:`default_split_fn`."""
    if not isinstance(leaf, NodeStates):
        return leaf
    return ctx.merge(leaf.graphdef, *leaf.states)


def is_tree_node(x: Any) -> bool:
    return isinstance(x, NodeStates)


def _is_prefix_leaf(x: Any) -> bool:
    return x is None or isinstance(x, Mapping) and hasattr(x, "filters") or not isinstance(
        x, list | tuple | dict
    )


def _map_with_prefix(f: Callable[[tuple, Any, Any], Any], prefix: Any, tree: Any, is_leaf) -> Any:
    """Applies ``f(path, prefix_leaf, leaf)`` to the ``is_leaf`` leaves of ``tree``."""
    if prefix is Missing:
        prefix = None

    def per_prefix(prefix_path, p, subtree):
        def per_leaf(leaf_path, leaf):
            return f(_path_parts(prefix_path) + _path_parts(leaf_path), p, leaf)

        return jax.tree_util.tree_map_with_path(per_leaf, subtree, is_leaf=is_leaf)

    return jax.tree_util.tree_map_with_path(
        per_prefix, prefix, tree, is_leaf=lambda x: x is None or _is_prefix_leaf(x)
    )


def to_tree(
    tree,
    /,
    *,
    prefix: Any = Missing,
    split_fn: Callable[[SplitContext, tuple, Any, Any], Any] = default_split_fn,
    map_non_graph_nodes: bool = False,
    ctxtag: Any = None,
    check_aliasing: bool = True,
) -> Any:
    """``tree`` with every graph node replaced by ``split_fn(ctx, path, prefix, node)``.

    ``prefix`` is a prefix tree of ``tree`` (e.g. vmap's ``in_axes``); the prefix leaf
    above a node is passed to ``split_fn`` (``StateAxes`` splits the node's state by its
    filters). With ``check_aliasing``, a node reached under two different prefixes is an
    error. With ``map_non_graph_nodes``, ``split_fn`` also sees the other leaves.
    """
    seen: dict[int, tuple[tuple, Any]] = {}
    with split_context(ctxtag) as ctx:

        def visit(path, p, leaf):
            if is_graph_node(leaf):
                if check_aliasing:
                    first = seen.setdefault(id(leaf), (path, p))
                    if first[1] is not p and first[1] != p:
                        raise ValueError(
                            f"to_tree(): the node at {path} is also at {first[0]} with a "
                            f"different prefix ({p!r} vs {first[1]!r}).\nFix: give every "
                            "reference to a shared node the same prefix."
                        )
                return split_fn(ctx, path, p, leaf)
            if map_non_graph_nodes:
                return split_fn(ctx, path, p, leaf)
            return leaf

        return _map_with_prefix(visit, prefix, tree, is_graph_node)


def from_tree(
    tree: Any,
    /,
    *,
    prefix: Any = Missing,
    merge_fn: Callable[[MergeContext, tuple, Any, Any], Any] = merge_tree_node,
    is_node_leaf: Callable[[Any], bool] = is_tree_node,
    is_leaf: Callable[[Any], bool] = is_tree_node,
    map_non_graph_nodes: bool = False,
    is_inner: bool | None = None,
    ctxtag: Any = None,
) -> Any:
    """Inverse of :func:`to_tree`: every ``NodeStates`` becomes a graph node again.

    Example:
      >>> import jax.numpy as jnp
      >>> from plait import nnx
      >>> class Foo(nnx.Module):
      ...   def __init__(self):
      ...     self.w = nnx.Param(jnp.ones(2))
      >>> foo = Foo()
      >>> a, b = nnx.from_tree(nnx.to_tree((foo, foo)))
      >>> a is b, a is foo
      (True, False)
    """
    with merge_context(ctxtag, is_inner) as ctx:

        def visit(path, p, leaf):
            if is_node_leaf(leaf) or map_non_graph_nodes:
                return merge_fn(ctx, path, p, leaf)
            return leaf

        return _map_with_prefix(visit, prefix, tree, is_leaf)


def prefix(node, filter_map, /, *, graph: bool | None = None):
    """A tree shaped like ``node`` whose Variables hold the value of their first filter.

    ``filter_map`` is ``{filter: value}`` (first match wins; a Variable matching none is
    an error) or a function ``(path, variable) -> value``. The result is a valid JAX
    prefix of ``node`` (a Module is a pytree), e.g. per-Variable ``in_axes`` for
    ``jax.vmap`` in tree mode.

    Example:
      >>> import jax.numpy as jnp
      >>> from plait import nnx
      >>> class Foo(nnx.Module):
      ...   def __init__(self):
      ...     self.w = nnx.Param(jnp.ones((3, 2)))
      ...     self.s = nnx.BatchStat(jnp.zeros(2))
      >>> axes = nnx.prefix(Foo(), {nnx.Param: 0, ...: None})
      >>> axes.w[...], axes.s[...]
      (0, None)
    """
    if callable(filter_map) and not isinstance(filter_map, Mapping):
        choose = filter_map
    else:
        rules = [(to_predicate(f), v) for f, v in filter_map.items()]

        def choose(path, variable):
            for predicate, value in rules:
                if predicate(path, variable):
                    return value
            raise ValueError(
                f"prefix(): no filter in {list(filter_map)} matches the "
                f"{type(variable).__name__} at {path}.\nFix: add a catch-all `...: value` entry."
            )

    from plait.core import iter_graph

    variables = {tuple(p): v for p, v in iter_graph(node) if isinstance(v, Variable)}
    return _map(lambda path, value: choose(path, variables[path]), node, graph=graph)

