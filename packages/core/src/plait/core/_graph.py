"""Graph operations: flatten/unflatten and split, merge, update, state, graphdef, pop, clone.

Flattening walks the graph depth-first, children in sorted-key order, and numbers graph
nodes and Variables in first-visit order. A node or Variable met again is a ``REF`` to its
index, so shared references and cycles survive a round trip. The leaves (Variables and bare
arrays) come out in the same order as the paths of a sorted :class:`FlatState`, so merging
a State only needs its sorted leaves and a path check.

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

from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from . import _compat
from ._errors import (
    EXTRA_PATHS,
    MISSING_PATHS,
    NOT_A_GRAPH_NODE,
    SHARED_IN_TREE_MODE,
    WRONG_LEAF_COUNT,
    GraphError,
    StateMismatchError,
)
from ._filters import Filter, to_predicate
from ._graphdef import (
    KIND_CACHE,
    LEAF,
    LEAF_DEF,
    NODE,
    PYTREE,
    REF,
    STATIC,
    VAR,
    GraphDef,
    Unhashable,
    graph_impl_for_type,
    thaw,
)
from ._object import (
    Object,
    TrackedDict,
    TrackedList,
    bump_structure_epoch,
    freeze_kinds,
    sorted_items,
)
from ._state import (
    FlatState,
    State,
    _partition,
    flat_paths_and_leaves,
    merge_state,
    nest,
    sort_keys,
)
from ._variable import Variable, _new_variable

A = TypeVar("A")
PathParts = tuple[Any, ...]

_STATIC_TYPES = frozenset({int, float, complex, bool, str, bytes, type(None), type})
_LIST_TYPES = (list, TrackedList)
_DICT_TYPES = (dict, TrackedDict)
# type -> whether JAX flattens its instances into children (for values of unknown types).
_generic_pytree_cache: dict[type, bool] = {}

_OBJECT_IMPL = graph_impl_for_type(Object)


def _is_generic_pytree(value: Any) -> bool:
    t = type(value)
    known = _generic_pytree_cache.get(t)
    if known is None:
        known = _compat.is_jax_pytree_node(value)
        _generic_pytree_cache[t] = known
    return known


# How a value is flattened, decided once per type (KIND_CACHE).
K_ARRAY, K_STATIC, K_VAR, K_NODE, K_SEQ, K_MAP, K_GENERIC = range(7)


def _value_kind(t: type, value: Any) -> int:
    kind = KIND_CACHE.get(t)
    if kind is not None:
        return kind
    if t in _compat.FAST_ARRAY_TYPES or issubclass(t, (jax.Array, np.ndarray)):
        kind = K_ARRAY
    elif t in _STATIC_TYPES:
        kind = K_STATIC
    elif issubclass(t, Variable):
        kind = K_VAR
    elif graph_impl_for_type(t) is not None:
        kind = K_NODE
    elif t is list or t is TrackedList or t is tuple:
        kind = K_SEQ
    elif t is dict or t is TrackedDict:
        kind = K_MAP
    elif _compat.is_jax_pytree_node(value):
        kind = K_GENERIC
    else:
        kind = K_STATIC
    KIND_CACHE[t] = kind
    return kind


class _Flattener:
    """One flatten pass: numbering, leaves, paths.

    Contract used by the lifting engine: ``keep_alive[i]`` is the object numbered ``i``
    (when the pass starts from an empty ``ref_index``), ``leaves``/``paths`` are in leaf
    order, and ``value(x, path)`` returns the node definition of ``x``.
    """

    __slots__ = ("ref_index", "paths", "leaves", "graph", "copy", "first_paths", "keep_alive")

    def __init__(self, ref_index: dict[int, int], graph: bool, copy: bool, with_paths: bool):
        self.ref_index = ref_index
        self.paths: list[PathParts] | None = [] if with_paths else None
        self.leaves: list[Any] = []
        self.graph = graph
        self.copy = copy
        self.first_paths: dict[int, PathParts] | None = None if graph else {}
        self.keep_alive: list[Any] = []

    def _seen(self, obj: Any, path: PathParts, kind: str) -> Any:
        """The REF definition for an already numbered object (an error in tree mode)."""
        if not self.graph:
            first = self.first_paths.get(id(obj), "<an earlier flatten call>")  # type: ignore[union-attr]
            raise GraphError(SHARED_IN_TREE_MODE.format(kind=kind, path=path, first_path=first))
        return (REF, self.ref_index[id(obj)])

    def _number(self, obj: Any, path: PathParts) -> int:
        index = len(self.ref_index)
        self.ref_index[id(obj)] = index
        self.keep_alive.append(obj)
        if self.first_paths is not None:
            self.first_paths[id(obj)] = path
        return index

    def node(self, node: Any, path: PathParts) -> Any:
        """Definition of a graph node (already known not to be numbered)."""
        index = self._number(node, path)
        if isinstance(node, Object):
            kinds = node._plait_kinds
            items = sorted_items(node.__dict__)
            metadata = (type(node), freeze_kinds(kinds))
        else:
            impl = graph_impl_for_type(type(node))
            raw_items, metadata = impl.flatten(node)  # type: ignore[union-attr]
            lookup = dict(raw_items)
            items = [(k, lookup[k]) for k in sort_keys(lookup)]
            kinds = None
        keys = []
        children = []
        value_def = self.value
        if kinds:
            for key, value in items:
                keys.append(key)
                if key in kinds:
                    children.append(self.marked(value, path + (key,), kinds[key]))
                else:
                    children.append(value_def(value, path + (key,)))
        else:
            for key, value in items:
                keys.append(key)
                children.append(value_def(value, path + (key,)))
        return (NODE, type(node), index, metadata, tuple(keys), tuple(children))

    def marked(self, value: Any, path: PathParts, is_data: bool) -> Any:
        if not is_data:
            return (STATIC, value)
        t = type(value)
        if t in _STATIC_TYPES and t is not str and t is not type(None) and t is not type:
            self._leaf(value, path)  # explicitly data: a scalar leaf
            return LEAF_DEF
        return self.value(value, path, scalars_are_data=True)

    def _leaf(self, value: Any, path: PathParts) -> None:
        self.leaves.append(value)
        if self.paths is not None:
            self.paths.append(path)

    def value(self, value: Any, path: PathParts, scalars_are_data: bool = False) -> Any:
        t = type(value)
        kind = KIND_CACHE.get(t)
        if kind is None:
            kind = _value_kind(t, value)
        if kind == K_VAR:
            if id(value) in self.ref_index:
                return self._seen(value, path, "Variable")
            index = self._number(value, path)
            metadata = value._var_metadata
            if self.copy:
                leaf = object.__new__(t)
                object.__setattr__(leaf, "_raw_value", value._raw_value)
                object.__setattr__(leaf, "_var_metadata", dict(metadata))
                self.leaves.append(leaf)
            else:
                self.leaves.append(value)
            if self.paths is not None:
                self.paths.append(path)
            return (VAR, t, index, tuple(sorted(metadata.items())) if metadata else ())
        if kind == K_STATIC:
            if scalars_are_data and t is not str and t is not type(None) and t is not type and t in _STATIC_TYPES:
                self._leaf(value, path)
                return LEAF_DEF
            return (STATIC, value)
        if kind == K_ARRAY:
            self.leaves.append(value)
            if self.paths is not None:
                self.paths.append(path)
            return LEAF_DEF
        if kind == K_NODE:
            if id(value) in self.ref_index:
                return self._seen(value, path, f"{t.__name__} node")
            return self.node(value, path)
        if kind == K_SEQ:
            children = tuple(
                self.value(child, path + (i,), scalars_are_data) for i, child in enumerate(value)
            )
            return (PYTREE, t, None, tuple(range(len(value))), children)
        if kind == K_MAP:
            keys = tuple(sort_keys(value))
            children = tuple(self.value(value[k], path + (k,), scalars_are_data) for k in keys)
            return (PYTREE, t, None, keys, children)
        items, treedef = _compat.flatten_one_level(value)
        keys = tuple(k for k, _ in items)
        children = tuple(self.value(c, path + (k,), scalars_are_data) for k, c in items)
        return (PYTREE, "jax", treedef, keys, children)


def _flatten(
    node: Any,
    *,
    graph: bool,
    copy: bool,
    with_paths: bool,
    ref_index: dict[int, int] | None = None,
) -> tuple[GraphDef[Any], list[PathParts] | None, list[Any]]:
    flattener = _Flattener({} if ref_index is None else ref_index, graph, copy, with_paths)
    root = flattener.value(node, ())
    paths = flattener.paths
    graphdef = GraphDef(root, len(flattener.leaves), tuple(paths) if paths is not None else None)
    return graphdef, paths, flattener.leaves


def _check_root(node: Any, func: str) -> None:
    if isinstance(node, Object) or graph_impl_for_type(type(node)) is not None:
        return
    t = type(node)
    if t in (list, tuple, dict, TrackedList, TrackedDict):
        return
    if isinstance(node, (Variable, jax.Array, np.ndarray)) or t in _STATIC_TYPES or not _is_generic_pytree(node):
        raise GraphError(NOT_A_GRAPH_NODE.format(func=func, type_name=t.__name__))


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
    graphdef, paths, leaves = _flatten(
        node, graph=_resolve_graph(graph), copy=False, with_paths=with_paths, ref_index=ref_index
    )
    if with_paths:
        return graphdef, FlatState.from_sorted_keys_values(graphdef.paths, leaves)
    return graphdef, leaves


class _Unflattener:
    __slots__ = ("leaves", "position", "index_ref", "copy", "trace")

    def __init__(self, leaves: list[Any], index_ref: dict[int, Any], copy: bool):
        self.leaves = leaves
        self.position = 0
        self.index_ref = index_ref
        self.copy = copy
        self.trace = _compat.current_trace_state()

    def build(self, nodedef: Any) -> Any:
        tag = nodedef[0]
        if tag == VAR:
            leaf = self.leaves[self.position]
            self.position += 1
            index = nodedef[2]
            existing = self.index_ref.get(index)
            if existing is not None:
                if isinstance(leaf, Variable):
                    existing.copy_from(leaf)
                else:
                    existing.set_raw_value(leaf)
                return existing
            if isinstance(leaf, Variable):
                var = leaf.copy() if self.copy else leaf
            else:
                var = _new_variable(nodedef[1], leaf, {k: thaw(v) for k, v in nodedef[3]})
            self.index_ref[index] = var
            return var
        if tag == NODE:
            return self.node(nodedef)
        if tag == STATIC:
            value = nodedef[1]
            return value.value if type(value) is Unhashable else value
        if tag == LEAF:
            leaf = self.leaves[self.position]
            self.position += 1
            return leaf
        if tag == PYTREE:
            _, kind, aux, keys, children = nodedef
            build = self.build
            values = [build(c) for c in children]
            if kind is tuple:
                return tuple(values)
            if kind is list or kind is TrackedList:
                return kind(values)
            if kind is dict or kind is TrackedDict:
                return kind(zip(keys, values, strict=False))
            return thaw(aux).unflatten(values)
        # REF
        try:
            return self.index_ref[nodedef[1]]
        except KeyError:
            raise GraphError(
                f"The GraphDef refers to object #{nodedef[1]}, which was defined in another "
                "flatten call. Fix: pass the same index_ref dict to every unflatten call whose "
                "graphdefs were made with a shared ref_index."
            ) from None

    def node(self, nodedef: Any) -> Any:
        _, typ, index, metadata, keys, children = nodedef
        existing = self.index_ref.get(index)
        impl = graph_impl_for_type(typ)
        is_object = impl is _OBJECT_IMPL
        if existing is not None and type(existing) is typ:
            node = existing
            if is_object:
                node.__dict__.clear()
            else:
                impl.clear(node)  # type: ignore[union-attr]
        elif is_object:
            node = object.__new__(typ)
            object.__setattr__(node, "_plait_trace", self.trace)
            kinds = metadata[1]
            object.__setattr__(node, "_plait_kinds", dict(kinds) if kinds else None)
        else:
            if impl is None:
                raise GraphError(
                    f"Cannot rebuild a node of type {typ.__name__}: it is no longer registered "
                    "as a graph node type. Fix: call register_graph_node_type for it first."
                )
            node = impl.create_empty(thaw(metadata))
        self.index_ref[index] = node
        build = self.build
        if is_object:
            attrs = node.__dict__
            for key, child in zip(keys, children, strict=False):
                attrs[key] = build(child)
        else:
            values = [build(c) for c in children]
            if impl.init is not None:  # type: ignore[union-attr]
                impl.init(node, zip(keys, values, strict=False))  # type: ignore[union-attr]
            else:
                for key, value in zip(keys, values, strict=False):
                    impl.set_key(node, key, value)  # type: ignore[union-attr]
        return node


def _mismatch_error(expected: tuple[PathParts, ...], actual: list[PathParts] | tuple[PathParts, ...]) -> StateMismatchError:
    expected_set = set(expected)
    actual_set = set(actual)
    missing = [p for p in expected if p not in actual_set]
    if missing:
        return StateMismatchError(
            MISSING_PATHS.format(count=len(missing), examples=", ".join(repr(p) for p in missing[:5]))
        )
    extra = [p for p in actual if p not in expected_set]
    if extra:
        return StateMismatchError(
            EXTRA_PATHS.format(count=len(extra), examples=", ".join(repr(p) for p in extra[:5]))
        )
    return StateMismatchError(
        "The state's paths are those of the GraphDef but in another order; this happens when "
        "keys of mixed types are compared differently. Fix: use keys of one type per level."
    )


def _leaves_for(graphdef: GraphDef[Any], state: Any) -> list[Any]:
    """The leaves of ``state`` in ``graphdef`` order, after checking that the paths fit."""
    if isinstance(state, list):
        if len(state) != graphdef.num_leaves:
            raise StateMismatchError(WRONG_LEAF_COUNT.format(expected=graphdef.num_leaves, actual=len(state)))
        return state
    if isinstance(state, FlatState):
        paths: Any = state.paths
        leaves = state.leaves
    elif isinstance(state, Mapping):
        paths, leaves = flat_paths_and_leaves(state)
    else:
        raise GraphError(
            f"Expected a State, FlatState, mapping or list of leaves to merge, got "
            f"{type(state).__name__}. Fix: pass the states returned by split()."
        )
    expected = graphdef.paths
    if len(paths) != len(expected) or tuple(paths) != expected:
        raise _mismatch_error(expected, paths)
    return leaves


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
    bare values are wrapped in a new Variable of the GraphDef's type and metadata.

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
    leaves = _leaves_for(graphdef, state)
    builder = _Unflattener(leaves, {} if index_ref is None else index_ref, copy_variables)
    bump_structure_epoch()
    return builder.build(graphdef._root)  # type: ignore[no-any-return]


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
    graphdef, paths, leaves = _flatten(node, graph=_resolve_graph(graph), copy=True, with_paths=True)
    if not filters:
        return graphdef, State(nest(paths, leaves), _copy=False)  # type: ignore[arg-type]
    groups = _partition(paths, leaves, filters, exhaustive=True)  # type: ignore[arg-type]
    return (graphdef, *(State(nest(p, v), _copy=False) for p, v in groups))


def merge(graphdef: GraphDef[A], state: Any = None, /, *states: Any, copy: bool = False, recreate_variables: bool = True) -> A:
    """Builds a new graph from a GraphDef and the States from :func:`split`.

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
    if state is None:
        state = State({}, _copy=False)
    if states:
        state = merge_state(state, *states)
    return unflatten(graphdef, state, copy_variables=copy)


def graphdef(node: Any, /, *, graph: bool | None = None) -> GraphDef[Any]:
    """The GraphDef of ``node`` alone."""
    _check_root(node, "graphdef")
    return _flatten(node, graph=_resolve_graph(graph), copy=False, with_paths=False)[0]


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
    _, paths, leaves = _flatten(node, graph=_resolve_graph(graph), copy=True, with_paths=True)
    if not filters:
        return State(nest(paths, leaves), _copy=False)  # type: ignore[arg-type]
    groups = _partition(paths, leaves, filters, exhaustive=False)  # type: ignore[arg-type]
    results = tuple(State(nest(p, v), _copy=False) for p, v in groups)
    return results[0] if len(results) == 1 else results


variables = state


def _child_of(node: Any, key: Any) -> Any:
    if isinstance(node, Object):
        return node.__dict__.get(key, _ABSENT)
    impl = graph_impl_for_type(type(node))
    if impl is not None:
        for k, v in impl.flatten(node)[0]:
            if k == key:
                return v
        return _ABSENT
    if isinstance(node, Mapping):
        return node.get(key, _ABSENT)
    if isinstance(node, (list, tuple)):
        return node[key] if isinstance(key, int) and 0 <= key < len(node) else _ABSENT
    return _ABSENT


class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


_ABSENT: Any = _Absent()


def _set_child(node: Any, key: Any, value: Any, path: PathParts) -> Any:
    """Sets ``node[key] = value``; returns the node (a new one for immutable containers)."""
    if isinstance(node, Object):
        setattr(node, key, value)
        return node
    impl = graph_impl_for_type(type(node))
    if impl is not None:
        impl.set_key(node, key, value)
        return node
    if isinstance(node, dict):
        node[key] = value
        return node
    if isinstance(node, list):
        node[key] = value
        return node
    if isinstance(node, tuple):
        items = list(node)
        items[key] = value
        return tuple(items)
    raise GraphError(
        f"Cannot write the path {path}: the container of type {type(node).__name__} at "
        f"{path[:-1]} is not mutable or not a node. Fix: store the value in a Variable."
    )


def _new_leaf(value: Any) -> Any:
    return value.copy() if isinstance(value, Variable) else value


def _update_node(node: Any, mapping: Mapping[Any, Any], path: PathParts) -> Any:
    for key, sub in mapping.items():
        child_path = path + (key,)
        current = _child_of(node, key)
        is_subtree = isinstance(sub, Mapping) and not isinstance(sub, Variable)
        if is_subtree:
            if current is _ABSENT:
                raise GraphError(
                    f"update(): the state has a subtree at {child_path} but the object has no "
                    f"attribute {key!r} there. Fix: create the sub-object first, or merge() a "
                    "new object from a graphdef that has it."
                )
            sub_mapping = sub._mapping if isinstance(sub, State) else sub
            new_child = _update_node(current, sub_mapping, child_path)
            if new_child is not current:
                node = _set_child(node, key, new_child, child_path)
        elif isinstance(current, Variable):
            if isinstance(sub, Variable):
                current.copy_from(sub)
            else:
                current.set_raw_value(sub)
        else:
            node = _set_child(node, key, _new_leaf(sub), child_path)
    return node


def update(node: Any, state: Any, /, *states: Any) -> None:
    """Writes the values of States into ``node``'s own Variables, in place.

    Paths the graph lacks are added as new attributes (holding copies of the state's
    Variables); paths the state lacks are left alone, so partial states are fine.

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
    mapping = state._mapping if isinstance(state, State) else state
    if isinstance(state, FlatState):
        mapping = state.to_nested_state()._mapping
    if not isinstance(mapping, Mapping):
        raise GraphError(f"update() expects a State or mapping, got {type(state).__name__}.")
    new_root = _update_node(node, mapping, ())
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
    predicates = [to_predicate(f) for f in filters]
    found: list[tuple[list[PathParts], list[Any]]] = [([], []) for _ in predicates]
    seen_nodes: set[int] = set()
    seen_vars: dict[int, int] = {}

    def visit(current: Any, path: PathParts) -> None:
        if id(current) in seen_nodes:
            return
        if not (isinstance(current, Object) or graph_impl_for_type(type(current)) is not None):
            return
        seen_nodes.add(id(current))
        for key, child in list(_children(current)):
            child_path = path + (key,)
            if isinstance(child, Variable):
                group = seen_vars.get(id(child))
                if group is None:
                    for i, predicate in enumerate(predicates):
                        if predicate(child_path, child):
                            group = seen_vars[id(child)] = i
                            found[i][0].append(child_path)
                            found[i][1].append(child)
                            break
                if group is not None:
                    _pop_child(current, key)
            else:
                for sub_path, sub in _walk_containers(child, child_path):
                    visit(sub, sub_path)

    visit(node, ())
    results = tuple(State(nest(p, v), _copy=False) for p, v in found)
    return results[0] if len(results) == 1 else results


def _pop_child(node: Any, key: Any) -> None:
    if isinstance(node, Object):
        delattr(node, key)
    else:
        graph_impl_for_type(type(node)).pop_key(node, key)  # type: ignore[union-attr]


def _children(node: Any) -> Any:
    if isinstance(node, Object):
        return sorted_items(node.__dict__)
    impl = graph_impl_for_type(type(node))
    if impl is not None:
        items = list(impl.flatten(node)[0])
        lookup = dict(items)
        return [(k, lookup[k]) for k in sort_keys(lookup)]
    if type(node) in (list, tuple, TrackedList):
        return list(enumerate(node))
    if isinstance(node, dict):
        return [(k, node[k]) for k in sort_keys(node)]
    if not isinstance(node, (Variable, jax.Array, np.ndarray)) and type(node) not in _STATIC_TYPES and _is_generic_pytree(node):
        return _compat.flatten_one_level(node)[0]
    return []


def _walk_containers(value: Any, path: PathParts) -> Iterator[tuple[PathParts, Any]]:
    """Graph nodes reachable from ``value`` through pytree containers (not through nodes)."""
    if isinstance(value, Object) or graph_impl_for_type(type(value)) is not None:
        yield path, value
        return
    if isinstance(value, (Variable, jax.Array, np.ndarray)) or type(value) in _STATIC_TYPES:
        return
    for key, child in _children(value):
        yield from _walk_containers(child, path + (key,))


def _is_node(x: Any) -> bool:
    return isinstance(x, Object) or graph_impl_for_type(type(x)) is not None


def is_node(x: Any) -> bool:
    """Whether ``x`` is a graph node or a pytree container (list, tuple, dict, pytree)."""
    if _is_node(x):
        return True
    t = type(x)
    if t in (list, tuple, dict, TrackedList, TrackedDict):
        return True
    if isinstance(x, (Variable, jax.Array, np.ndarray)) or t in _STATIC_TYPES:
        return False
    return _is_generic_pytree(x)


def iter_graph(node: Any, /, *, graph: bool | None = None) -> Iterator[tuple[PathParts, Any]]:
    """Yields ``(path, value)`` for every node and leaf, children before parents, root last.

    Each graph node and Variable is visited once (at its first path).

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.core import Object, Param, iter_graph
        >>> class Foo(Object):
        ...     def __init__(self):
        ...         self.w = Param(jnp.ones(2))
        ...         self.n = 3
        >>> [(p, type(v).__name__) for p, v in iter_graph(Foo())]
        [(('n',), 'int'), (('w',), 'Param'), ((), 'Foo')]
    """
    visited: set[int] = set()
    yield from _iter_graph(node, (), visited)


def _iter_graph(value: Any, path: PathParts, visited: set[int]) -> Iterator[tuple[PathParts, Any]]:
    if isinstance(value, Variable) or _is_node(value):
        if id(value) in visited:
            return
        visited.add(id(value))
    if not isinstance(value, Variable):
        for key, child in _children(value):
            yield from _iter_graph(child, path + (key,), visited)
    yield path, value


def iter_children(node: Any, /, *, graph: bool | None = None) -> Iterator[tuple[Any, Any]]:
    """Yields ``(key, child)`` for the direct children of a graph node."""
    yield from _children(node)


def find_duplicates(node: Any, /, *, only: Filter = ...) -> list[list[PathParts]]:
    """Lists, for each node or Variable reachable by several paths, all of its paths.

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.core import Object, Param, find_duplicates
        >>> class Foo(Object):
        ...     def __init__(self):
        ...         self.a = Param(jnp.ones(1))
        ...         self.b = self.a
        >>> find_duplicates(Foo())
        [[('a',), ('b',)]]
    """
    predicate = to_predicate(only)
    all_paths: dict[int, list[PathParts]] = {}
    objects: dict[int, Any] = {}

    def visit(value: Any, path: PathParts) -> None:
        tracked = isinstance(value, Variable) or _is_node(value)
        if tracked:
            paths = all_paths.get(id(value))
            if paths is not None:
                paths.append(path)
                return
            all_paths[id(value)] = [path]
            objects[id(value)] = value
        if not isinstance(value, Variable):
            for key, child in _children(value):
                visit(child, path + (key,))

    visit(node, ())
    return [
        paths
        for obj_id, paths in all_paths.items()
        if len(paths) > 1 and predicate(paths[0], objects[obj_id])
    ]


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
    graphdef_, _, leaves = _flatten(node, graph=_resolve_graph(graph), copy=variables, with_paths=False)
    if arrays:
        leaves = [jax.tree.map(jnp.copy, leaf) for leaf in leaves]
    return unflatten(graphdef_, leaves)


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
    """A new graph with ``f(path, value)`` applied to every leaf of ``node``'s state."""
    graphdef_, state_ = split(node, graph=graph)
    paths, leaves = flat_paths_and_leaves(state_)
    new_leaves = [f(p, v) for p, v in zip(paths, leaves, strict=False)]
    return unflatten(graphdef_, new_leaves)


class set_graph_mode:  # noqa: N801 - Flax's name
    """Sets the default of ``graph=`` (True: graph mode, False: tree mode).

    Takes effect when created; use it as a context manager (restores on exit), as a
    decorator (applies during each call), or call it once to change the default.

    Examples:
        >>> from plait.core import set_graph_mode
        >>> set_graph_mode.get_default()
        True
        >>> with set_graph_mode(False):
        ...     set_graph_mode.get_default()
        False
    """

    _stack: list[bool] = [True]

    def __init__(self, value: bool, /):
        self.value = bool(value)
        self._stack.append(self.value)

    @classmethod
    def get_default(cls) -> bool:
        return cls._stack[-1]

    @classmethod
    def get_stack(cls) -> list[bool]:
        return cls._stack

    def __enter__(self) -> set_graph_mode:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.pop()

    def __call__(self, f: Callable[..., Any]) -> Callable[..., Any]:
        self._stack.pop()  # as a decorator it applies per call, not from creation
        value = self.value

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            set_graph_mode._stack.append(value)
            try:
                return f(*args, **kwargs)
            finally:
                set_graph_mode._stack.pop()

        wrapper.__name__ = getattr(f, "__name__", "wrapper")
        wrapper.__doc__ = getattr(f, "__doc__", None)
        return wrapper


def _resolve_graph(graph: bool | None) -> bool:
    return set_graph_mode._stack[-1] if graph is None else bool(graph)


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


def recursive_map(f: Callable[[PathParts, Any], Any], node: Any, /, *, graph: bool | None = None) -> Any:
    """Applies ``f(path, x)`` bottom-up to every node and leaf; shared objects map once.

    Graph nodes are updated in place with their mapped children before ``f`` sees them;
    pytree containers are rebuilt.

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.core import Object, Param, recursive_map
        >>> class Foo(Object):
        ...     def __init__(self):
        ...         self.w = Param(jnp.ones(2))
        >>> foo = recursive_map(lambda p, x: x.replace(x[...] * 3) if isinstance(x, Param) else x, Foo())
        >>> foo.w[...].tolist()
        [3.0, 3.0]
    """
    mapped: dict[int, Any] = {}

    def go(value: Any, path: PathParts) -> Any:
        tracked = isinstance(value, Variable) or _is_node(value)
        if tracked and id(value) in mapped:
            return mapped[id(value)]
        if tracked and not isinstance(value, Variable):
            mapped[id(value)] = value  # cycles see the node itself
            for key, child in _children(value):
                new_child = go(child, path + (key,))
                if new_child is not child:
                    _set_child(value, key, new_child, path + (key,))
            result = f(path, value)
        elif not tracked and not isinstance(value, (jax.Array, np.ndarray)) and is_node(value):
            result = f(path, _rebuild(value, [go(c, path + (k,)) for k, c in _children(value)]))
        else:
            result = f(path, value)
        if tracked:
            mapped[id(value)] = result
        return result

    return go(node, ())


def _rebuild(container: Any, values: list[Any]) -> Any:
    t = type(container)
    if t is tuple:
        return tuple(values)
    if t in (list, TrackedList):
        return t(values)
    if t in (dict, TrackedDict):
        return t(zip(sort_keys(container), values, strict=False))
    _, treedef = _compat.flatten_one_level(container)
    return treedef.unflatten(values)
