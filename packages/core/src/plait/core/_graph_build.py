"""What a GraphDef compiles into, once: a build plan, a leaf-slot trie and State layouts.

Each is computed on first use and kept on the GraphDef (``GraphDef._derived``), so a GraphDef
that is reused (the structure cache returns the same object while a model's structure is
unchanged; a jitted function closes over one) pays for it once.

- **Build plan** (:func:`build`): the node definitions with each Object's static attributes
  pre-collected into a dict (copied per build) and only the dynamic ones left to rebuild.
- **Leaf slots** (:func:`leaves_from_states`): a trie ``key -> leaf index | sub-trie`` of
  the GraphDef's paths. A State is matched against it in one walk over its own entries (no
  sorting, no path tuples); several States fill the same slots, later ones winning. Any
  mismatch falls back to the sorted-path comparison, which names the missing/extra paths.
- **Layouts** (:func:`nested_state`, :func:`grouped_states`): nested ``(key, leaf index |
  sub-layout)`` tuples to build a State's dicts directly, one per filter group. Groups of
  structural filters (types, tags, paths; see ``_filters``) are cached per GraphDef.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from . import _variable
from ._errors import (
    EXTRA_PATHS,
    MISSING_PATHS,
    UNMATCHED_LEAF,
    WRONG_LEAF_COUNT,
    FilterError,
    GraphError,
    StateMismatchError,
)
from ._filters import Filter, filters_to_predicates, is_structural, to_predicate
from ._graphdef import (
    LEAF,
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
from ._object import Object, TrackedDict, TrackedList
from ._state import FlatState, State, _describe, _filter_text, flat_paths_and_leaves, merge_state
from ._variable import _AUX_SET, _META_SET, _RAW_SET, Variable

PathParts = tuple[Any, ...]

P_OBJECT, P_NODE, P_VAR, P_REF, P_LEAF, P_STATIC, P_TUPLE, P_LIST, P_DICT, P_JAX = range(10)
_P_LEAF = (P_LEAF,)
_OBJECT_IMPL = graph_impl_for_type(Object)
_set_dict = Object.__dict__["__dict__"].__set__
_set_trace = Object.__dict__["_plait_trace"].__set__
_set_kinds = Object.__dict__["_plait_kinds"].__set__
_new = object.__new__


def _derived(graphdef: GraphDef[Any]) -> dict[Any, Any]:
    return graphdef._derived  # type: ignore[no-any-return]


# -- build plan ---------------------------------------------------------------------------------


def _static(value: Any) -> Any:
    return value.value if type(value) is Unhashable else value


def _compile(nodedef: Any) -> Any:
    tag = nodedef[0]
    if tag == NODE:
        _, typ, index, metadata, keys, children = nodedef
        impl = graph_impl_for_type(typ)
        if impl is _OBJECT_IMPL:
            statics: dict[Any, Any] = {}
            dynamic = []
            for key, child in zip(keys, children, strict=True):
                if child[0] == STATIC:
                    statics[key] = _static(child[1])
                else:
                    dynamic.append((key, _compile(child)))
            kinds = metadata[1]
            return (P_OBJECT, typ, index, dict(kinds) if kinds else None, statics, tuple(dynamic))
        return (P_NODE, typ, index, thaw(metadata), keys, tuple(_compile(c) for c in children))
    if tag == VAR:
        return (P_VAR, nodedef[1], nodedef[2], {k: thaw(v) for k, v in nodedef[3]})
    if tag == REF:
        return (P_REF, nodedef[1])
    if tag == LEAF:
        return _P_LEAF
    if tag == STATIC:
        return (P_STATIC, _static(nodedef[1]))
    _, kind, aux, keys, children = nodedef
    ops = tuple(_compile(c) for c in children)
    if kind is tuple:
        return (P_TUPLE, ops)
    if kind is list or kind is TrackedList:
        return (P_LIST, kind, ops)
    if kind is dict or kind is TrackedDict:
        return (P_DICT, kind, keys, ops)
    return (P_JAX, thaw(aux), ops)


def plan_of(graphdef: GraphDef[Any]) -> Any:
    derived = _derived(graphdef)
    plan = derived.get("plan")
    if plan is None:
        plan = derived["plan"] = _compile(graphdef._root)
    return plan


def build(graphdef: GraphDef[Any], leaves: list[Any], index_ref: dict[int, Any], copy: bool, trace: Any) -> Any:
    """Rebuilds the graph of ``graphdef`` around ``leaves`` (see ``unflatten``)."""
    return _Builder(leaves, index_ref, copy, trace).any_node(plan_of(graphdef))


class _Builder:
    # A class, not closures: nested functions calling each other form a reference cycle
    # that would keep every built object alive until the cyclic garbage collector runs.
    __slots__ = ("next_leaf", "index_ref", "reuse", "copy", "trace")

    def __init__(self, leaves: list[Any], index_ref: dict[int, Any], copy: bool, trace: Any):
        self.next_leaf = iter(leaves).__next__
        self.index_ref = index_ref
        self.reuse = bool(index_ref)  # objects already in index_ref are refilled, not recreated
        self.copy = copy
        self.trace = trace

    def variable(self, op: Any) -> Any:
        leaf = self.next_leaf()
        index = op[2]
        index_ref = self.index_ref
        if self.reuse:
            existing = index_ref.get(index)
            if existing is not None:
                if isinstance(leaf, Variable):
                    existing.copy_from(leaf)
                else:
                    existing.set_raw_value(leaf)
                return existing
        if isinstance(leaf, Variable):
            if self.copy:
                var = _new(type(leaf))
                _RAW_SET(var, leaf._raw_value)
                _META_SET(var, dict(leaf._var_metadata))
                _AUX_SET(var, None)
            else:
                var = leaf
        else:
            var = _new(op[1])
            _RAW_SET(var, leaf)
            _META_SET(var, op[3].copy())
            _AUX_SET(var, None)
        index_ref[index] = var
        return var

    def obj(self, op: Any) -> Any:
        _, typ, index, kinds, statics, dynamic = op
        index_ref = self.index_ref
        node = index_ref.get(index) if self.reuse else None
        if node is not None and type(node) is typ:
            attrs = node.__dict__
            attrs.clear()
            attrs.update(statics)
            fresh = False
        else:
            node = _new(typ)
            _set_trace(node, self.trace)
            _set_kinds(node, kinds.copy() if kinds else None)
            attrs = statics.copy()
            fresh = True
        index_ref[index] = node
        for key, child in dynamic:
            code = child[0]
            if code == P_VAR:
                attrs[key] = self.variable(child)
            elif code == P_OBJECT:
                attrs[key] = self.obj(child)
            else:
                attrs[key] = self.any_node(child)
        if fresh:
            _set_dict(node, attrs)
        return node

    def any_node(self, op: Any) -> Any:
        code = op[0]
        if code == P_VAR:
            return self.variable(op)
        if code == P_OBJECT:
            return self.obj(op)
        if code == P_LEAF:
            return self.next_leaf()
        if code == P_STATIC:
            return op[1]
        if code == P_REF:
            try:
                return self.index_ref[op[1]]
            except KeyError:
                raise GraphError(
                    f"The GraphDef refers to object #{op[1]}, which was defined in another "
                    "flatten call. Fix: pass the same index_ref dict to every unflatten call "
                    "whose graphdefs were made with a shared ref_index."
                ) from None
        build = self.any_node
        if code == P_TUPLE:
            return tuple([build(c) for c in op[1]])
        if code == P_LIST:
            return op[1]([build(c) for c in op[2]])
        if code == P_DICT:
            return op[1](zip(op[2], [build(c) for c in op[3]], strict=True))
        if code == P_JAX:
            return op[1].unflatten([build(c) for c in op[2]])
        return self.registered_node(op)

    def registered_node(self, op: Any) -> Any:
        _, typ, index, metadata, keys, children = op
        impl = graph_impl_for_type(typ)
        if impl is None:
            raise GraphError(
                f"Cannot rebuild a node of type {typ.__name__}: it is no longer registered "
                "as a graph node type. Fix: call register_graph_node_type for it first."
            )
        existing = self.index_ref.get(index) if self.reuse else None
        if existing is not None and type(existing) is typ:
            node = existing
            impl.clear(node)
        else:
            node = impl.create_empty(metadata)
        self.index_ref[index] = node
        values = [self.any_node(c) for c in children]
        if impl.init is not None:
            impl.init(node, zip(keys, values, strict=True))
        else:
            for key, value in zip(keys, values, strict=True):
                impl.set_key(node, key, value)
        return node


# -- leaf slots: State -> leaves in GraphDef order ------------------------------------------------

_ABSENT: Any = object()
# type -> whether a value of it is a subtree of a State (a mapping that is not a Variable).
_SUBTREE_TYPES: dict[type, bool] = {dict: True, State: True}


def _is_subtree_type(t: type) -> bool:
    known = _SUBTREE_TYPES.get(t)
    if known is None:
        known = _SUBTREE_TYPES[t] = issubclass(t, Mapping) and not issubclass(t, Variable)
    return known


def _slots_of(graphdef: GraphDef[Any]) -> dict[Any, Any] | None:
    """The trie of leaf paths (None when some leaf has the empty path)."""
    derived = _derived(graphdef)
    trie = derived.get("slots", _ABSENT)
    if trie is _ABSENT:
        trie = {}
        for i, path in enumerate(graphdef.paths):
            if not path:
                trie = None
                break
            node = trie
            for key in path[:-1]:
                child = node.get(key)
                if child is None:
                    child = node[key] = {}
                node = child
            node[path[-1]] = i
        derived["slots"] = trie
    return trie


def _fill(trie: dict[Any, Any], mapping: Mapping[Any, Any], out: list[Any]) -> bool:
    """Writes the leaves of ``mapping`` into their slots; False when some path does not fit."""
    subtree_types = _SUBTREE_TYPES
    stack = [(trie, mapping)]
    pop = stack.pop
    push = stack.append
    while stack:
        trie, mapping = pop()
        for key, value in mapping.items():
            slot = trie.get(key, _ABSENT)
            t = type(value)
            subtree = subtree_types.get(t)
            if subtree is None:
                subtree = _is_subtree_type(t)
            if type(slot) is int:
                if subtree:
                    return False
                out[slot] = value
            elif slot is _ABSENT:
                if not (subtree and not value):  # an empty subtree names no leaf
                    return False
            elif not subtree:
                return False
            elif t is dict:
                push((slot, value))
            elif t is State:
                push((slot, value._mapping))
            else:
                push((slot, dict(value)))
    return True


def mismatch_error(expected: tuple[PathParts, ...], actual: Any) -> StateMismatchError:
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


def _sorted_leaves(graphdef: GraphDef[Any], state: Any) -> list[Any]:
    """The reference matching: sorted paths of one state compared with the GraphDef's."""
    if isinstance(state, FlatState):
        paths: Any = state.paths
        leaves = state.leaves
    else:
        paths, leaves = flat_paths_and_leaves(state)
    expected = graphdef.paths
    if len(paths) != len(expected) or tuple(paths) != expected:
        raise mismatch_error(expected, paths)
    return leaves


def _check_state_type(state: Any) -> None:
    if not isinstance(state, (Mapping, FlatState, list)):
        raise GraphError(
            f"Expected a State, FlatState, mapping or list of leaves to merge, got "
            f"{type(state).__name__}. Fix: pass the states returned by split()."
        )


def leaves_from_states(graphdef: GraphDef[Any], states: tuple[Any, ...]) -> list[Any]:
    """The leaves of ``states`` (merged, later ones winning) in ``graphdef``'s leaf order."""
    for s in states:
        _check_state_type(s)
    if len(states) == 1:
        state = states[0]
        if type(state) is list:
            if len(state) != graphdef.num_leaves:
                raise StateMismatchError(
                    WRONG_LEAF_COUNT.format(expected=graphdef.num_leaves, actual=len(state))
                )
            return state
        if isinstance(state, FlatState):
            return _sorted_leaves(graphdef, state)
    if any(isinstance(s, list) for s in states):
        raise GraphError(
            "merge()/unflatten() take a list of leaves only on its own, not together with "
            "other states. Fix: pass one list, or only States."
        )
    trie = _slots_of(graphdef)
    if trie is not None:
        out = [_ABSENT] * graphdef.num_leaves
        ok = True
        for s in states:
            if isinstance(s, FlatState):
                s = s.to_nested_state()
            mapping = s._mapping if type(s) is State else s
            if not _fill(trie, mapping, out):
                ok = False
                break
        if ok:
            for leaf in out:
                if leaf is _ABSENT:
                    break
            else:
                return out
    # Some path does not fit: the reference comparison names the missing/extra ones.
    merged = states[0] if len(states) == 1 else merge_state(*states)
    return _sorted_leaves(graphdef, merged)


# -- layouts: leaves -> nested State dicts ---------------------------------------------------------


def _def_layout(nodedef: Any, next_index: Any) -> tuple[Any, ...]:
    """The layout of a node definition's leaves: ``((key, index | sub-layout), ...)``."""
    if nodedef[0] == NODE:
        keys, children = nodedef[4], nodedef[5]
    else:
        keys, children = nodedef[3], nodedef[4]
    items = []
    for key, child in zip(keys, children, strict=True):
        tag = child[0]
        if tag == VAR or tag == LEAF:
            items.append((key, next_index()))
        elif tag == NODE or tag == PYTREE:
            sub = _def_layout(child, next_index)
            if sub:
                items.append((key, sub))
    return tuple(items)


def _full_layout(graphdef: GraphDef[Any]) -> tuple[Any, ...]:
    derived = _derived(graphdef)
    layout = derived.get("layout")
    if layout is None:
        root = graphdef._root
        if root[0] not in (NODE, PYTREE):
            raise GraphError(
                "A State needs a non-empty path for every leaf, but this GraphDef's root is a "
                "leaf itself. Fix: split/state the object that holds it."
            )
        layout = derived["layout"] = _def_layout(root, itertools.count().__next__)
    return layout  # type: ignore[no-any-return]


def _prune(layout: tuple[Any, ...], keep: list[bool]) -> tuple[Any, ...]:
    out = []
    for key, sub in layout:
        if type(sub) is int:
            if keep[sub]:
                out.append((key, sub))
        else:
            pruned = _prune(sub, keep)
            if pruned:
                out.append((key, pruned))
    return tuple(out)


def _fill_layout(layout: tuple[Any, ...], leaves: list[Any]) -> dict[Any, Any]:
    return {k: leaves[s] if type(s) is int else _fill_layout(s, leaves) for k, s in layout}


def nested_state(graphdef: GraphDef[Any], leaves: list[Any]) -> State:
    """The State of all ``leaves`` (in ``graphdef`` order)."""
    return State(_fill_layout(_full_layout(graphdef), leaves), _copy=False)


def note_all_variables(graphdef: GraphDef[Any], leaves: list[Any]) -> None:
    """Records whether every leaf is a Variable (the flattener knows it for free)."""
    derived = _derived(graphdef)
    if "all_vars" not in derived:
        derived["all_vars"] = all(isinstance(leaf, Variable) for leaf in leaves)


_GROUP_CACHE_LIMIT = 32


def _group_of_each(graphdef: GraphDef[Any], leaves: list[Any], predicates: tuple[Any, ...],
                   filters: tuple[Filter, ...], exhaustive: bool) -> list[int]:
    """For each leaf, the index of the first predicate it matches (-1: none)."""
    paths = graphdef.paths
    groups = []
    append = groups.append
    for path, leaf in zip(paths, leaves, strict=True):
        for i, predicate in enumerate(predicates):
            if predicate(path, leaf):
                append(i)
                break
        else:
            if exhaustive:
                names = [_filter_text(f) for f in filters]
                raise FilterError(
                    UNMATCHED_LEAF.format(
                        path=path, kind=_describe(leaf), filters=f"[{', '.join(names)}]",
                        first=", ".join(names),
                    )
                )
            append(-1)
    return groups


def grouped_states(
    graphdef: GraphDef[Any], leaves: list[Any], filters: tuple[Filter, ...], *, exhaustive: bool
) -> list[State]:
    """One State per filter: the leaves matching it and no earlier filter.

    ``exhaustive``: every leaf must match a filter (``split``); otherwise unmatched leaves
    are dropped (``state``). Groups of structural filters are cached on the GraphDef when
    every leaf is a Variable (a bare array's type is not part of the GraphDef).
    """
    predicates = filters_to_predicates(filters) if exhaustive else tuple(to_predicate(f) for f in filters)
    derived = _derived(graphdef)
    cache_key = None
    all_vars = derived.get("all_vars")
    if all_vars is None:
        note_all_variables(graphdef, leaves)
        all_vars = derived["all_vars"]
    if all_vars and all(is_structural(p) for p in predicates):
        cache_key = ("groups", predicates, exhaustive, _variable.registry_version())
        layouts = derived.get(cache_key)
        if layouts is not None:
            return [State(_fill_layout(layout, leaves), _copy=False) for layout in layouts]
    membership = _group_of_each(graphdef, leaves, predicates, filters, exhaustive)
    full = _full_layout(graphdef)
    layouts = tuple(_prune(full, [g == i for g in membership]) for i in range(len(predicates)))
    if cache_key is not None:
        cached = [k for k in derived if type(k) is tuple]
        if len(cached) >= _GROUP_CACHE_LIMIT:
            for k in cached:
                del derived[k]
        derived[cache_key] = layouts
    return [State(_fill_layout(layout, leaves), _copy=False) for layout in layouts]
