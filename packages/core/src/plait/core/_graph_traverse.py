"""Walking and editing graphs in place: child access, update, pop, iter_graph, find_duplicates, recursive_map.

Objects keep their children in their instance dict. String keys are attributes (set and
deleted through ``__setattr__``/``__delattr__``, which check the trace and bump the
structure epoch); other keys (the integer keys of ``nnx.List``) are written into the dict
directly, with the same trace check, container tracking and epoch bump.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import numpy as np

from . import _compat
from ._errors import GraphError
from ._filters import Filter, to_predicate
from ._graph_build import _SUBTREE_TYPES, _is_subtree_type
from ._graph_flatten import K_OBJECT
from ._graphdef import KIND_CACHE, graph_impl_for_type
from ._object import (
    Object,
    TrackedDict,
    TrackedList,
    bump_structure_epoch,
    check_trace,
    sorted_items,
    track,
)
from ._state import State, nest, sort_keys
from ._variable import Variable

PathParts = tuple[Any, ...]

_STATIC_TYPES = frozenset({int, float, complex, bool, str, bytes, type(None), type})
_OBJECT_IMPL = graph_impl_for_type(Object)


def _is_object(x: Any) -> bool:
    t = type(x)
    kind = KIND_CACHE.get(t)
    if kind is None:
        return graph_impl_for_type(t) is _OBJECT_IMPL
    return kind == K_OBJECT


def _is_node(x: Any) -> bool:
    return graph_impl_for_type(type(x)) is not None


def is_node(x: Any) -> bool:
    """Whether ``x`` is a graph node or a pytree container (list, tuple, dict, pytree).

    Examples:
        >>> from plait.core import Rngs, is_node
        >>> is_node(Rngs(0)), is_node([1]), is_node(1)
        (True, True, False)
    """
    if _is_node(x):
        return True
    t = type(x)
    if t in (list, tuple, dict, TrackedList, TrackedDict):
        return True
    if isinstance(x, (Variable, jax.Array, np.ndarray)) or t in _STATIC_TYPES:
        return False
    return _compat.is_jax_pytree_node(x)


def is_node_leaf(x: Any) -> bool:
    """Whether ``x`` is a leaf of a graph's state: a Variable or an array.

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.core import Param, is_node_leaf
        >>> is_node_leaf(Param(1)), is_node_leaf(jnp.ones(2)), is_node_leaf(1)
        (True, True, False)
    """
    return isinstance(x, Variable) or _compat.is_array(x)


def is_pytree_node(x: Any, *, check_graph_registry: bool = True) -> bool:
    """Whether ``x`` is a pytree container (rebuilt by value).

    With ``check_graph_registry`` (the default) graph nodes do not count, although Objects
    are also JAX pytrees; Variables and arrays never count.

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.core import Rngs, is_pytree_node
        >>> is_pytree_node([1]), is_pytree_node(Rngs(0)), is_pytree_node(jnp.ones(1))
        (True, False, False)
        >>> is_pytree_node(Rngs(0), check_graph_registry=False)
        True
    """
    if check_graph_registry and _is_node(x):
        return False
    if x is None or isinstance(x, Variable) or _compat.is_array(x) or type(x) in _STATIC_TYPES:
        return False
    t = type(x)
    if t in (list, tuple, dict, TrackedList, TrackedDict):
        return True
    return _compat.is_jax_pytree_node(x)


def jax_to_nnx_path(jax_path: tuple[Any, ...], /) -> tuple[Any, ...]:
    """A JAX key path (``DictKey``, ``SequenceKey``, ``GetAttrKey``...) as plain keys.

    Examples:
        >>> import jax
        >>> from plait.core import jax_to_nnx_path
        >>> ku = jax.tree_util
        >>> jax_to_nnx_path((ku.DictKey("a"), ku.SequenceKey(0), ku.GetAttrKey("b")))
        ('a', 0, 'b')
    """
    return tuple(_compat.key_entry_to_key(entry) for entry in jax_path)


# -- child access ---------------------------------------------------------------------------------


def _children(node: Any) -> Any:
    """``[(key, child), ...]`` of a node or container, in sorted-key order."""
    if _is_object(node):
        return sorted_items(node.__dict__)
    impl = graph_impl_for_type(type(node))
    if impl is not None:
        lookup = dict(impl.flatten(node)[0])
        return [(k, lookup[k]) for k in sort_keys(lookup)]
    if type(node) in (list, tuple, TrackedList):
        return list(enumerate(node))
    if isinstance(node, dict):
        return [(k, node[k]) for k in sort_keys(node)]
    if (
        not isinstance(node, (Variable, jax.Array, np.ndarray))
        and type(node) not in _STATIC_TYPES
        and _compat.is_jax_pytree_node(node)
    ):
        return _compat.flatten_one_level(node)[0]
    return []


class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


_ABSENT: Any = _Absent()


def _child_of(node: Any, key: Any) -> Any:
    if _is_object(node):
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


def _set_object_key(node: Any, key: Any, value: Any) -> None:
    if type(key) is str:
        setattr(node, key, value)
        return
    check_trace(node, key)
    node.__dict__[key] = track(value)
    bump_structure_epoch()


def _pop_object_key(node: Any, key: Any) -> None:
    if type(key) is str:
        delattr(node, key)
        return
    check_trace(node, key)
    del node.__dict__[key]
    bump_structure_epoch()


def _set_child(node: Any, key: Any, value: Any, path: PathParts) -> Any:
    """Sets ``node[key] = value``; returns the node (a new one for immutable containers)."""
    if _is_object(node):
        _set_object_key(node, key, value)
        return node
    impl = graph_impl_for_type(type(node))
    if impl is not None:
        impl.set_key(node, key, value)
        return node
    if isinstance(node, (dict, list)):
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


def _pop_child(node: Any, key: Any) -> None:
    if _is_object(node):
        _pop_object_key(node, key)
    else:
        graph_impl_for_type(type(node)).pop_key(node, key)  # type: ignore[union-attr]


# -- update ---------------------------------------------------------------------------------------


def _new_leaf(value: Any) -> Any:
    return value.copy() if isinstance(value, Variable) else value


def update_node(node: Any, mapping: Mapping[Any, Any], path: PathParts) -> Any:
    """Writes ``mapping`` (a nested State mapping) into ``node``; returns the (new) node."""
    attrs = node.__dict__ if _is_object(node) else None
    subtree_types = _SUBTREE_TYPES
    for key, sub in mapping.items():
        current = attrs.get(key, _ABSENT) if attrs is not None else _child_of(node, key)
        sub_type = type(sub)
        subtree = subtree_types.get(sub_type)
        if subtree is None:
            subtree = _is_subtree_type(sub_type)
        if subtree:
            child_path = path + (key,)
            if current is _ABSENT:
                raise GraphError(
                    f"update(): the state has a subtree at {child_path} but the object has no "
                    f"attribute {key!r} there. Fix: create the sub-object first, or merge() a "
                    "new object from a graphdef that has it."
                )
            sub_mapping = sub._mapping if sub_type is State else sub
            new_child = update_node(current, sub_mapping, child_path)
            if new_child is not current:
                node = _set_child(node, key, new_child, child_path)
        elif isinstance(current, Variable):
            if isinstance(sub, Variable):
                current.copy_from(sub)
            else:
                current.set_raw_value(sub)
        else:
            node = _set_child(node, key, _new_leaf(sub), path + (key,))
    return node


# -- pop ------------------------------------------------------------------------------------------


def graph_pop(node: Any, filters: tuple[Filter, ...]) -> tuple[State, ...]:
    """Removes the Variables matching ``filters`` from ``node``; one State per filter.

    Variables held by graph nodes (any key type) and inside mutable lists/dicts and tuples
    stored on them are removed; a Variable inside another kind of pytree is left in place.
    Each Variable goes to the first filter it matches; a shared Variable is popped everywhere.

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.core import Object, Param, Intermediate, graph_pop
        >>> class Foo(Object):
        ...     def __init__(self):
        ...         self.w = Param(jnp.ones(2))
        ...         self.acts = [Intermediate(jnp.zeros(1)), Intermediate(jnp.zeros(2))]
        >>> foo = Foo()
        >>> (popped,) = graph_pop(foo, (Intermediate,))
        >>> sorted(popped["acts"]), foo.acts
        ([0, 1], [])
    """
    predicates = [to_predicate(f) for f in filters]
    found: list[tuple[list[PathParts], list[Any]]] = [([], []) for _ in predicates]
    seen_nodes: set[int] = set()
    seen_vars: dict[int, int | None] = {}

    def matches(var: Any, path: PathParts) -> bool:
        if id(var) in seen_vars:
            return seen_vars[id(var)] is not None
        for i, predicate in enumerate(predicates):
            if predicate(path, var):
                seen_vars[id(var)] = i
                found[i][0].append(path)
                found[i][1].append(var)
                return True
        seen_vars[id(var)] = None
        return False

    def prune(value: Any, path: PathParts) -> Any:
        """``value`` without matching Variables (mutable containers in place); visits nodes."""
        if _is_node(value):
            visit(value, path)
            return value
        t = type(value)
        if t is list or t is TrackedList:
            drop = [i for i, item in enumerate(value) if _prune_item(value, i, item, path)]
            for i in reversed(drop):
                del value[i]
            return value
        if t is dict or t is TrackedDict:
            drop = [k for k in sort_keys(value) if _prune_item(value, k, value[k], path)]
            for k in drop:
                del value[k]
            return value
        if t is tuple:
            items = []
            changed = False
            for i, item in enumerate(value):
                if isinstance(item, Variable) and matches(item, path + (i,)):
                    changed = True
                    continue
                new_item = prune(item, path + (i,))
                changed = changed or new_item is not item
                items.append(new_item)
            return tuple(items) if changed else value
        if isinstance(value, (Variable, jax.Array, np.ndarray)) or t in _STATIC_TYPES:
            return value
        for key, child in _children(value):  # other pytrees: only look for nodes inside
            prune_nodes_only(child, path + (key,))
        return value

    def _prune_item(container: Any, key: Any, item: Any, path: PathParts) -> bool:
        if isinstance(item, Variable):
            return matches(item, path + (key,))
        new_item = prune(item, path + (key,))
        if new_item is not item:
            container[key] = new_item
        return False

    def prune_nodes_only(value: Any, path: PathParts) -> None:
        if _is_node(value):
            visit(value, path)
        elif not isinstance(value, (Variable, jax.Array, np.ndarray)) and type(value) not in _STATIC_TYPES:
            for key, child in _children(value):
                prune_nodes_only(child, path + (key,))

    def visit(current: Any, path: PathParts) -> None:
        if id(current) in seen_nodes:
            return
        seen_nodes.add(id(current))
        for key, child in list(_children(current)):
            child_path = path + (key,)
            if isinstance(child, Variable):
                if matches(child, child_path):
                    _pop_child(current, key)
            else:
                new_child = prune(child, child_path)
                if new_child is not child:
                    _set_child(current, key, new_child, child_path)

    if prune(node, ()) is not node:
        raise GraphError(
            "pop(): the root is a tuple holding matching Variables directly; a tuple cannot "
            "be changed in place. Fix: pass a list, or the objects that hold the Variables."
        )
    return tuple(State(nest(p, v), _copy=False) for p, v in found)


# -- traversals -----------------------------------------------------------------------------------


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
    """Yields ``(key, child)`` for the direct children of a graph node, in key order.

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.core import Object, Param, iter_children
        >>> class Foo(Object):
        ...     def __init__(self):
        ...         self.w = Param(jnp.ones(2))
        ...         self.n = 3
        >>> [k for k, _ in iter_children(Foo())]
        ['n', 'w']
    """
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
