"""Flattening an object graph into a GraphDef and its leaves, and the structure cache.

Children of a node are visited in sorted-key order, graph nodes and Variables are numbered
in first-visit order, and a node or Variable met again is a ``REF`` to its index (an error
in tree mode). The hot loop is :meth:`_Flattener.object`: it classifies each attribute by
its type through ``KIND_CACHE`` (one dict lookup), emits static attributes without building
a path, and numbers Variables inline.

Structure cache. Flattening the same root again while :func:`structure_epoch` is unchanged
gives the same GraphDef and the same leaves (the epoch grows on every structural change of
an Object, its tracked containers and Variable metadata). :func:`flatten_cached` keeps, per
root (an Object, or a tuple/list of Objects), the GraphDef and weak references to the
leaves, and reuses them while the epoch is unchanged. A graph that holds something whose
mutation the epoch cannot see (a plain ``list``/``dict`` written past ``__setattr__``, a
registered non-Object node type, a mutable JAX pytree) is never cached.
"""

from __future__ import annotations

import weakref
from typing import Any

import jax
import numpy as np

from . import _compat, _object
from ._errors import SHARED_IN_TREE_MODE, GraphError
from ._graphdef import (
    KIND_CACHE,
    LEAF_DEF,
    NODE,
    PYTREE,
    REF,
    STATIC,
    VAR,
    GraphDef,
    graph_impl_for_type,
)
from ._object import Object, TrackedDict, TrackedList, freeze_kinds
from ._state import sort_keys
from ._variable import _AUX_SET, _META_SET, _RAW_SET, Variable

PathParts = tuple[Any, ...]

_STATIC_TYPES = frozenset({int, float, complex, bool, str, bytes, type(None), type})
# Types a value marked ``data(...)`` turns into a leaf instead of a static value.
_SCALAR_DATA_TYPES = frozenset({int, float, complex, bool, bytes})

# How a value is flattened, decided once per type (KIND_CACHE). K_NODE: a registered graph
# node type other than Object; K_OBJECT: an Object (the inline fast path).
K_ARRAY, K_STATIC, K_VAR, K_NODE, K_SEQ, K_MAP, K_GENERIC, K_OBJECT = range(8)

_OBJECT_IMPL = graph_impl_for_type(Object)
_new = object.__new__


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
    else:
        impl = graph_impl_for_type(t)
        if impl is _OBJECT_IMPL:
            kind = K_OBJECT
        elif impl is not None:
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


# type -> whether instances of a generic JAX pytree type are immutable (namedtuples, frozen
# dataclasses, FrozenDict): only those keep a graph cacheable.
_IMMUTABLE_PYTREE: dict[type, bool] = {}


def _immutable_pytree_type(t: type) -> bool:
    known = _IMMUTABLE_PYTREE.get(t)
    if known is None:
        from .frozen_dict import FrozenDict  # imported here: frozen_dict pulls in serialization

        params = getattr(t, "__dataclass_params__", None)
        known = (
            issubclass(t, (tuple, FrozenDict))
            or (params is not None and bool(params.frozen))
            or bool(getattr(t, "_plait_immutable_pytree", False))
        )
        _IMMUTABLE_PYTREE[t] = known
    return known


def copy_variable(var: Any) -> Any:
    """A new Variable of the same type sharing the value, with its own metadata dict."""
    leaf = _new(type(var))
    _RAW_SET(leaf, var._raw_value)
    _META_SET(leaf, dict(var._var_metadata))
    _AUX_SET(leaf, None)
    return leaf


class _Flattener:
    """One flatten pass: numbering, leaves, paths.

    Contract used by the lifting engine: ``keep_alive[i]`` is the object numbered ``i``
    (when the pass starts from an empty ``ref_index``), ``leaves``/``paths`` are in leaf
    order, and ``value(x, path)`` returns the node definition of ``x``. ``cacheable`` ends
    False when the graph holds something the structure epoch does not track.
    """

    __slots__ = (
        "ref_index", "paths", "leaves", "graph", "copy", "first_paths", "keep_alive", "cacheable",
    )

    def __init__(self, ref_index: dict[int, int], graph: bool, copy: bool, with_paths: bool):
        self.ref_index = ref_index
        self.paths: list[PathParts] | None = [] if with_paths else None
        self.leaves: list[Any] = []
        self.graph = graph
        self.copy = copy
        self.first_paths: dict[int, PathParts] | None = None if graph else {}
        self.keep_alive: list[Any] = []
        self.cacheable = True

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

    def variable(self, var: Any, path: PathParts) -> Any:
        if id(var) in self.ref_index:
            return self._seen(var, path, "Variable")
        index = self._number(var, path)
        metadata = var._var_metadata
        self.leaves.append(copy_variable(var) if self.copy else var)
        if self.paths is not None:
            self.paths.append(path)
        return (VAR, type(var), index, tuple(sorted(metadata.items())) if metadata else ())

    def object(self, node: Any, path: PathParts) -> Any:
        """Definition of an Object (already known not to be numbered): the hot loop."""
        ref_index = self.ref_index
        index = len(ref_index)
        ref_index[id(node)] = index
        self.keep_alive.append(node)
        first_paths = self.first_paths
        if first_paths is not None:
            first_paths[id(node)] = path
        kinds = node._plait_kinds
        attrs = node.__dict__
        try:
            keys = sorted(attrs)
        except TypeError:  # keys of mixed types (ints and strings)
            keys = sort_keys(attrs)
        children: list[Any] = []
        append = children.append
        kind_of = KIND_CACHE.get
        leaves_append = self.leaves.append
        paths = self.paths
        copy = self.copy
        for key in keys:
            value = attrs[key]
            if kinds is not None and key in kinds:
                append(self.marked(value, path + (key,), kinds[key]))
                continue
            t = type(value)
            kind = kind_of(t)
            if kind == K_STATIC:
                append((STATIC, value))
            elif kind == K_VAR:
                vid = id(value)
                if vid in ref_index:
                    append(self._seen(value, path + (key,), "Variable"))
                    continue
                vindex = len(ref_index)
                ref_index[vid] = vindex
                self.keep_alive.append(value)
                if first_paths is not None:
                    first_paths[vid] = path + (key,)
                metadata = value._var_metadata
                if copy:
                    leaf = _new(t)
                    _RAW_SET(leaf, value._raw_value)
                    _META_SET(leaf, dict(metadata))
                    _AUX_SET(leaf, None)
                    leaves_append(leaf)
                else:
                    leaves_append(value)
                if paths is not None:
                    paths.append(path + (key,))
                append((VAR, t, vindex, tuple(sorted(metadata.items())) if metadata else ()))
            else:
                append(self.value(value, path + (key,)))
        node_type = type(node)
        return (NODE, node_type, index, (node_type, freeze_kinds(kinds)), tuple(keys), tuple(children))

    def node(self, node: Any, path: PathParts) -> Any:
        """Definition of a graph node (already known not to be numbered)."""
        if graph_impl_for_type(type(node)) is _OBJECT_IMPL:
            return self.object(node, path)
        self.cacheable = False  # registered node types mutate without bumping the epoch
        index = self._number(node, path)
        impl = graph_impl_for_type(type(node))
        raw_items, metadata = impl.flatten(node)  # type: ignore[union-attr]
        lookup = dict(raw_items)
        keys = tuple(sort_keys(lookup))
        value_def = self.value
        children = tuple(value_def(lookup[k], path + (k,)) for k in keys)
        return (NODE, type(node), index, metadata, keys, children)

    def marked(self, value: Any, path: PathParts, is_data: bool) -> Any:
        if not is_data:
            return (STATIC, value)
        if type(value) in _SCALAR_DATA_TYPES:
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
        if kind == K_OBJECT:
            if id(value) in self.ref_index:
                return self._seen(value, path, f"{t.__name__} node")
            return self.object(value, path)
        if kind == K_VAR:
            return self.variable(value, path)
        if kind == K_STATIC:
            if scalars_are_data and t in _SCALAR_DATA_TYPES:
                self._leaf(value, path)
                return LEAF_DEF
            return (STATIC, value)
        if kind == K_ARRAY:
            self.leaves.append(value)
            if self.paths is not None:
                self.paths.append(path)
            return LEAF_DEF
        if kind == K_SEQ:
            if t is list:
                self.cacheable = False  # a plain list is mutated without bumping the epoch
            children = tuple(
                self.value(child, path + (i,), scalars_are_data) for i, child in enumerate(value)
            )
            return (PYTREE, t, None, tuple(range(len(value))), children)
        if kind == K_MAP:
            if t is dict:
                self.cacheable = False
            keys = tuple(sort_keys(value))
            children = tuple(self.value(value[k], path + (k,), scalars_are_data) for k in keys)
            return (PYTREE, t, None, keys, children)
        if kind == K_NODE:
            if id(value) in self.ref_index:
                return self._seen(value, path, f"{t.__name__} node")
            return self.node(value, path)
        if not _immutable_pytree_type(t):
            self.cacheable = False
        items, treedef = _compat.flatten_one_level(value)
        keys = tuple(k for k, _ in items)
        children = tuple(self.value(c, path + (k,), scalars_are_data) for k, c in items)
        return (PYTREE, "jax", treedef, keys, children)


def flatten_graph(
    node: Any,
    *,
    graph: bool,
    copy: bool,
    with_paths: bool,
    ref_index: dict[int, int] | None = None,
) -> tuple[GraphDef[Any], list[PathParts] | None, list[Any]]:
    """One uncached flatten pass: ``(graphdef, paths or None, leaves)``."""
    flattener = _Flattener({} if ref_index is None else ref_index, graph, copy, with_paths)
    root = flattener.value(node, ())
    paths = flattener.paths
    graphdef = GraphDef(root, len(flattener.leaves), tuple(paths) if paths is not None else None)
    return graphdef, paths, flattener.leaves


# -- structure cache -------------------------------------------------------------------------


class _Strong:
    """Holds a leaf that cannot be weakly referenced (a Python scalar marked as data)."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value

    def __call__(self) -> Any:
        return self.value


class _Entry:
    __slots__ = ("roots", "graphdef", "leaf_refs")

    def __init__(self, roots: tuple[Any, ...], graphdef: GraphDef[Any], leaf_refs: list[Any]):
        self.roots = roots
        self.graphdef = graphdef
        self.leaf_refs = leaf_refs


_cache: dict[tuple[Any, ...], _Entry] = {}
_cache_epoch = -1
_CACHE_LIMIT = 256


def _cache_roots(node: Any) -> tuple[Any, ...] | None:
    """The objects a cache entry for ``node`` is keyed on, or None when it is not cacheable."""
    t = type(node)
    if _value_kind(t, node) == K_OBJECT:
        return (node,)
    if t is tuple or t is list:
        if node and all(_value_kind(type(x), x) == K_OBJECT for x in node):
            return tuple(node)
    return None


def _weak(x: Any) -> Any:
    try:
        return weakref.ref(x)
    except TypeError:
        return _Strong(x)


def _forget(key: tuple[Any, ...]) -> Any:
    def callback(_: Any) -> None:
        _cache.pop(key, None)

    return callback


def flatten_cached(node: Any, graph: bool) -> tuple[GraphDef[Any], list[Any]]:
    """``(graphdef, leaves)`` of ``node`` (its own Variables), reusing the cached pass.

    The GraphDef carries the paths. The caller must not mutate the returned list's items'
    structure; it may mutate the list.
    """
    global _cache_epoch
    roots = _cache_roots(node)
    if roots is None:
        graphdef, _, leaves = flatten_graph(node, graph=graph, copy=False, with_paths=True)
        return graphdef, leaves
    key = (graph, type(node), *map(id, roots))
    epoch = _object._epoch
    if epoch != _cache_epoch:
        _cache.clear()
        _cache_epoch = epoch
    else:
        entry = _cache.get(key)
        if entry is not None and all(r() is x for r, x in zip(entry.roots, roots, strict=True)):
            leaves = [r() for r in entry.leaf_refs]
            for leaf in leaves:
                if leaf is None:  # a leaf died: the structure changed behind the epoch's back
                    break
            else:
                return entry.graphdef, leaves
    flattener = _Flattener({}, graph, False, True)
    root = flattener.value(node, ())
    leaves = flattener.leaves
    graphdef = GraphDef(root, len(leaves), tuple(flattener.paths))  # type: ignore[arg-type]
    if flattener.cacheable and _object._epoch == epoch:
        if len(_cache) >= _CACHE_LIMIT:
            _cache.clear()
        callback = _forget(key)
        _cache[key] = _Entry(
            tuple(weakref.ref(x, callback) for x in roots), graphdef, [_weak(x) for x in leaves]
        )
    return graphdef, leaves


def clear_structure_cache() -> None:
    """Drops every cached flatten (tests; code that mutates objects past ``__setattr__``)."""
    _cache.clear()
