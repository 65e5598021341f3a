"""Graph operations: split, merge, update, state, graphdef, flatten/unflatten, pop, clone.

Flattening walks the graph depth-first, children in sorted-key order, and numbers graph
nodes and Variables in first-visit order. A node or Variable met again is a ``REF`` to its
index, so shared references and cycles survive a round trip. The leaves (Variables and bare
arrays) come out in the same order as the paths of a sorted :class:`FlatState`.

The work is split across private modules, re-exported here for internal importers:
``_graph_flatten`` (the flatten pass and the structure cache), ``_graph_build`` (what a
GraphDef compiles into: build plan, leaf slots, State layouts), ``_graph_traverse`` (child
access, update, pop, iter_graph, find_duplicates, recursive_map) and ``_graph_modes``
(``set_graph_mode`` / ``set_graph_updates``).

Identity across calls (for the lifting engine):

- ``ref_index: dict[int, int]`` maps ``id(obj)`` -> index for every graph node and Variable
  flattened. Passing the same dict to several ``flatten`` calls numbers everything once: an
  object seen by an earlier call becomes a ``REF`` in later GraphDefs. The caller keeps the
  objects alive while the dict is in use (ids are only unique among live objects).
- ``index_ref: dict[int, Any]`` maps index -> object. ``unflatten`` fills it with every node
  and Variable it creates; an index that is already present is *reused*: a Variable gets the
  new leaf written into it in place, a graph node of the same type is cleared and refilled.
  Passing the same dict to several ``unflatten`` calls resolves cross-call ``REF``\\s.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from . import _compat
from ._errors import NOT_A_GRAPH_NODE, GraphError
from ._filters import Filter, to_predicate
from ._graph_build import build as _build
from ._graph_build import grouped_states, leaves_from_states, nested_state
from ._graph_flatten import (  # noqa: F401 - re-exported for the lifting engine
    K_ARRAY,
    K_GENERIC,
    K_MAP,
    K_NODE,
    K_OBJECT,
    K_SEQ,
    K_STATIC,
    K_VAR,
    KIND_CACHE,
    _Flattener,
    _value_kind,
    clear_structure_cache,
    copy_variable,
    flatten_cached,
    flatten_graph,
)
from ._graph_modes import (  # noqa: F401 - re-exported
    _resolve_graph,
    _resolve_graph_updates,
    set_graph_mode,
    set_graph_updates,
)
from ._graph_traverse import (  # noqa: F401 - re-exported
    _ABSENT,
    _child_of,
    _children,
    _is_node,
    _pop_child,
    _rebuild,
    _set_child,
    find_duplicates,
    graph_pop,
    is_node,
    iter_children,
    iter_graph,
    recursive_map,
    update_node,
)
from ._graphdef import GraphDef, graph_impl_for_type
from ._object import TrackedDict, TrackedList, bump_structure_epoch
from ._state import FlatState, State, merge_state
from ._variable import _AUX_SET, _META_SET, _RAW_SET, Variable

A = TypeVar("A")
PathParts = tuple[Any, ...]

_STATIC_TYPES = frozenset({int, float, complex, bool, str, bytes, type(None), type})


def _check_root(node: Any, func: str) -> None:
    t = type(node)
    if graph_impl_for_type(t) is not None or t in (list, tuple, dict, TrackedList, TrackedDict):
        return
    if (
        isinstance(node, (Variable, jax.Array, np.ndarray))
        or t in _STATIC_TYPES
        or not _compat.is_jax_pytree_node(node)
    ):
        raise GraphError(NOT_A_GRAPH_NODE.format(func=func, type_name=t.__name__))


def _copies(leaves: list[Any]) -> list[Any]:
    """``leaves`` with every Variable replaced by a copy (the State that split/state return)."""
    var_types = _VAR_TYPES
    new = object.__new__
    out = []
    append = out.append
    for leaf in leaves:
        t = type(leaf)
        if t in var_types or (t not in _NON_VAR_TYPES and _note_type(t)):
            var = new(t)
            _RAW_SET(var, leaf._raw_value)
            _META_SET(var, dict(leaf._var_metadata))
            _AUX_SET(var, None)
            append(var)
        else:
            append(leaf)
    return out


_VAR_TYPES: set[type] = set()
_NON_VAR_TYPES: set[type] = set()


def _note_type(t: type) -> bool:
    if issubclass(t, Variable):
        _VAR_TYPES.add(t)
        return True
    _NON_VAR_TYPES.add(t)
    return False


def flatten(
    node: A,
    /,
    *,
    with_paths: bool = True,
    ref_index: dict[int, int] | None = None,
    ref_outer_index: dict[int, int] | None = None,
    graph: bool | None = None,
) -> tuple[GraphDef[A], FlatState[Any] | list[Any]]:
    """Flattens a graph into its GraphDef and its leaves (the graph's own Variables, not copies).

    Args:
        node: a graph node or a container of them.
        with_paths: return a sorted :class:`FlatState` (``True``) or a plain list of leaves.
        ref_index: ``id(obj) -> index`` map shared across calls (see module docs).
        ref_outer_index: accepted for Flax compatibility; unused.
        graph: ``False`` for tree mode (shared references are an error).

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.core import Object, Param, flatten
        >>> class Foo(Object):
        ...     def __init__(self):
        ...         self.a = Param(jnp.ones(1))
        ...         self.b = self.a  # shared
        >>> graphdef, flat = flatten(Foo())
        >>> flat.paths, graphdef.num_leaves
        ((('a',),), 1)
    """
    mode = _resolve_graph(graph)
    if ref_index is None:
        graphdef, leaves = flatten_cached(node, mode)
    else:
        graphdef, _, leaves = flatten_graph(node, graph=mode, copy=False, with_paths=with_paths, ref_index=ref_index)
    if with_paths:
        return graphdef, FlatState.from_sorted_keys_values(graphdef.paths, leaves)
    return graphdef, leaves


def unflatten(
    graphdef: GraphDef[A],
    state: Any,
    /,
    *,
    index_ref: dict[int, Any] | None = None,
    outer_index_outer_ref: dict[int, Any] | None = None,
    copy_variables: bool = False,
    recreate_variables: bool = True,
) -> A:
    """Rebuilds a graph from its GraphDef and its leaves (State, FlatState or list).

    Variables found in the state are used as they are (``copy_variables=False``) or copied;
    bare values are wrapped in a new Variable of the GraphDef's type and metadata. Objects
    already in ``index_ref`` are refilled in place (a structural change: the structure epoch
    grows); a build of new objects only leaves the epoch alone.

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.core import Object, Param, flatten, unflatten
        >>> class Foo(Object):
        ...     def __init__(self):
        ...         self.w = Param(jnp.zeros(2))
        >>> graphdef, leaves = flatten(Foo(), with_paths=False)
        >>> unflatten(graphdef, [jnp.ones(2)]).w[...].tolist()
        [1.0, 1.0]
    """
    if not isinstance(graphdef, GraphDef):
        raise GraphError(f"unflatten() expects a GraphDef first, got {type(graphdef).__name__}.")
    leaves = leaves_from_states(graphdef, (state,))
    return _unflatten_leaves(graphdef, leaves, index_ref, copy_variables)


def _unflatten_leaves(graphdef: GraphDef[A], leaves: list[Any], index_ref: dict[int, Any] | None,
                      copy: bool) -> A:
    refill = bool(index_ref)
    if index_ref is None:
        index_ref = {}
    node = _build(graphdef, leaves, index_ref, copy, _compat.current_trace_state())
    if refill:
        bump_structure_epoch()
    return node  # type: ignore[no-any-return]


def split(node: A, *filters: Filter, graph: bool | None = None) -> tuple[Any, ...]:
    """Splits a graph into a GraphDef and one State per filter (copies of the Variables).

    Every Variable must match one filter; ``...`` as the last filter collects the rest.

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.core import Object, Param, BatchStat, split, merge
        >>> class Foo(Object):
        ...     def __init__(self):
        ...         self.w = Param(jnp.ones(2))
        ...         self.m = BatchStat(jnp.zeros(2))
        >>> graphdef, params, rest = split(Foo(), Param, ...)
        >>> list(params), list(rest)
        (['w'], ['m'])
        >>> merge(graphdef, params, rest).w.shape
        (2,)
    """
    _check_root(node, "split")
    graphdef, own = flatten_cached(node, _resolve_graph(graph))
    leaves = _copies(own)
    if not filters:
        return graphdef, nested_state(graphdef, leaves)
    return (graphdef, *grouped_states(graphdef, leaves, filters, exhaustive=True))


def merge(graphdef: GraphDef[A], state: Any = None, /, *states: Any, copy: bool = False, recreate_variables: bool = True) -> A:
    """Builds a new graph from a GraphDef and the States from :func:`split`.

    Several States are merged (later ones win where paths coincide); a ``(graphdef, state)``
    pair is accepted as the first argument.

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.core import Object, Param, split, merge
        >>> class Foo(Object):
        ...     def __init__(self):
        ...         self.w = Param(jnp.ones(2))
        >>> foo = Foo()
        >>> copy = merge(*split(foo))
        >>> copy is foo, copy.w is foo.w
        (False, False)
    """
    if isinstance(graphdef, tuple) and len(graphdef) == 2 and isinstance(graphdef[0], GraphDef):
        graphdef, first = graphdef  # merge((graphdef, state))
        states = (first,) + ((state,) if state is not None else ()) + states
        state = states[0]
        states = states[1:]
    if not isinstance(graphdef, GraphDef):
        raise GraphError(
            f"merge() expects a GraphDef first, got {type(graphdef).__name__}. Fix: "
            "`merge(graphdef, state, ...)` with the graphdef returned by split()."
        )
    all_states = (State({}, _copy=False),) if state is None else (state, *states)
    leaves = leaves_from_states(graphdef, all_states)
    return _unflatten_leaves(graphdef, leaves, None, copy)


def graphdef(node: Any, /, *, graph: bool | None = None) -> GraphDef[Any]:
    """The GraphDef of ``node`` alone.

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.core import Object, Param, graphdef
        >>> class Foo(Object):
        ...     def __init__(self):
        ...         self.w = Param(jnp.ones(2))
        >>> graphdef(Foo()).num_leaves
        1
    """
    _check_root(node, "graphdef")
    return flatten_cached(node, _resolve_graph(graph))[0]


def state(node: Any, *filters: Filter, graph: bool | None = None) -> Any:
    """The State of ``node`` (copies of its Variables), optionally one State per filter.

    Unlike :func:`split`, filters need not cover every Variable.

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.core import Object, Param, BatchStat, state
        >>> class Foo(Object):
        ...     def __init__(self):
        ...         self.w = Param(jnp.ones(2))
        ...         self.m = BatchStat(jnp.zeros(2))
        >>> list(state(Foo(), BatchStat))
        ['m']
    """
    _check_root(node, "state")
    graphdef_, own = flatten_cached(node, _resolve_graph(graph))
    leaves = _copies(own)
    if not filters:
        return nested_state(graphdef_, leaves)
    results = grouped_states(graphdef_, leaves, filters, exhaustive=False)
    return results[0] if len(results) == 1 else tuple(results)


variables = state


def update(node: Any, state: Any, /, *states: Any) -> None:
    """Writes the values of States into ``node``'s own Variables, in place.

    Paths the graph lacks are added as new attributes (holding copies of the state's
    Variables); paths the state lacks are left alone, so partial states are fine. Integer
    keys (``nnx.List`` items) are written like attributes.

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.core import Object, Param, state, update
        >>> class Foo(Object):
        ...     def __init__(self):
        ...         self.w = Param(jnp.zeros(2))
        >>> foo = Foo(); w = foo.w
        >>> s = state(foo); s.w[...] = jnp.ones(2)
        >>> update(foo, s)
        >>> foo.w is w, foo.w[...].tolist()
        (True, [1.0, 1.0])
    """
    _check_root(node, "update")
    if states:
        state = merge_state(state, *states)
    if isinstance(state, FlatState):
        mapping: Any = state.to_nested_state()._mapping
    elif isinstance(state, State):
        mapping = state._mapping
    else:
        mapping = state
    if not isinstance(mapping, Mapping):
        raise GraphError(f"update() expects a State or mapping, got {type(state).__name__}.")
    new_root = update_node(node, mapping, ())
    if new_root is not node:
        raise GraphError(
            "update(): the root is an immutable container (a tuple) whose leaves changed; "
            "it cannot be updated in place. Fix: wrap the values in Variables."
        )


def pop(node: Any, *filters: Filter) -> Any:
    """Removes the Variables matching the filters from ``node`` and returns them as States.

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.core import Object, Param, Intermediate, pop
        >>> class Foo(Object):
        ...     def __init__(self):
        ...         self.w = Param(jnp.ones(2))
        ...         self.h = Intermediate(jnp.zeros(2))
        >>> foo = Foo()
        >>> list(pop(foo, Intermediate)), hasattr(foo, "h")
        (['h'], False)
    """
    if not filters:
        raise GraphError("pop() needs at least one filter, e.g. pop(module, nnx.Intermediate).")
    _check_root(node, "pop")
    results = graph_pop(node, filters)
    return results[0] if len(results) == 1 else results


def clone(node: A, variables: bool = True, *, arrays: bool = False, graph: bool | None = None) -> A:
    """A deep copy of a graph (new nodes and Variables; shared references stay shared).

    Args:
        variables: copy the Variables (``False``: the clone shares them with ``node``).
        arrays: also copy the array buffers.

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.core import Object, Param, clone
        >>> class Foo(Object):
        ...     def __init__(self):
        ...         self.w = Param(jnp.ones(2))
        >>> foo = Foo(); other = clone(foo)
        >>> other.w is foo.w, other.w.shape
        (False, (2,))
    """
    graphdef_, leaves = flatten_cached(node, _resolve_graph(graph))
    if variables:
        leaves = _copies(leaves)
    else:
        leaves = list(leaves)
    if arrays:
        leaves = [jax.tree.map(jnp.copy, leaf) for leaf in leaves]
    return _unflatten_leaves(graphdef_, leaves, None, False)


def call(graphdef_state: tuple[GraphDef[A], Any], /) -> ApplyCaller:
    """``call((graphdef, state)).method(*args)`` -> ``(output, (graphdef, new_state))``."""
    graphdef_, state_ = graphdef_state
    return ApplyCaller(graphdef_, (state_,))


class ApplyCaller:
    """Calls a method on a freshly merged graph and returns the output and the new state."""

    __slots__ = ("_graphdef", "_states", "_names")

    def __init__(self, graphdef: GraphDef[Any], states: tuple[Any, ...], names: tuple[str, ...] = ()):
        self._graphdef = graphdef
        self._states = states
        self._names = names

    def __getattr__(self, name: str) -> ApplyCaller:
        if name.startswith("__"):
            raise AttributeError(name)
        return ApplyCaller(self._graphdef, self._states, self._names + (name,))

    def __call__(self, *args: Any, **kwargs: Any) -> tuple[Any, tuple[GraphDef[Any], Any]]:
        node = merge(self._graphdef, *self._states)
        method: Any = node
        for name in self._names:
            method = getattr(method, name)
        output = method(*args, **kwargs)
        graphdef_, state_ = split(node)
        return output, (graphdef_, state_)


def map(f: Callable[[PathParts, Any], Any], node: A, /, *, graph: bool | None = None) -> A:  # noqa: A001 - Flax's name
    """A new graph with ``f(path, leaf)`` applied to every leaf of ``node``'s state."""
    graphdef_, own = flatten_cached(node, _resolve_graph(graph))
    paths = graphdef_.paths
    leaves = _copies(own)
    new_leaves = [f(p, v) for p, v in zip(paths, leaves, strict=True)]
    return _unflatten_leaves(graphdef_, new_leaves, None, False)


def set_metadata(node: Any, /, *, only: Filter = Variable, **metadata: Any) -> None:
    """Sets metadata on every Variable of ``node`` matching ``only``, in place.

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.core import Object, Param, set_metadata
        >>> class Foo(Object):
        ...     def __init__(self):
        ...         self.w = Param(jnp.ones(2))
        >>> foo = Foo(); set_metadata(foo, sharding_names=("x",))
        >>> foo.w.sharding_names
        ('x',)
    """
    predicate = to_predicate(only)
    for path, value in iter_graph(node):
        if isinstance(value, Variable) and predicate(path, value):
            value.set_metadata(**metadata)


def _is_variable(x: Any) -> bool:
    return isinstance(x, Variable)


def as_pure(tree: A) -> A:
    """``tree`` with every Variable replaced by its raw value (e.g. a State -> arrays).

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.core import State, Param, as_pure
        >>> as_pure(State({"w": Param(1.0)}))["w"]
        1.0
    """
    return jax.tree.map(lambda x: x.get_value() if isinstance(x, Variable) else x, tree, is_leaf=_is_variable)


pure = as_pure

