"""The node-type registry and GraphDef, the static description of an object graph.

A GraphDef is a tree of plain nested tuples (so hashing and ``==`` run in C) wrapped in an
immutable object that caches the hash. Node definitions, by their first element:

- ``(NODE, type, index, metadata, keys, children)``  a graph node (by reference)
- ``(VAR, type, index, metadata_items)``             a Variable (consumes one leaf)
- ``(REF, index)``                                   a second reference to a node/Variable
- ``(LEAF,)``                                        a bare array (consumes one leaf)
- ``(STATIC, value)``                                a static Python value
- ``(PYTREE, kind, aux, keys, children)``            a pytree node (list, dict, ...; by value)

``index`` numbers graph nodes and Variables in first-visit order (depth-first, children in
sorted-key order), which is also the order of the leaves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, TypeVar

import jax

from . import _compat

Node = TypeVar("Node")

NODE, VAR, REF, LEAF, STATIC, PYTREE = range(6)
LEAF_DEF = (LEAF,)


class Unhashable:
    """Wraps an unhashable static value so a GraphDef can still be hashed (by identity)."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value

    def __hash__(self) -> int:
        return id(self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Unhashable) and other.value is self.value

    def __repr__(self) -> str:
        return f"Unhashable({type(self.value).__name__})"


def freeze(value: Any) -> Any:
    """``value`` if hashable, else wrapped in :class:`Unhashable`."""
    try:
        hash(value)
    except TypeError:
        if isinstance(value, tuple):
            return tuple(freeze(v) for v in value)
        return Unhashable(value)
    return value


def thaw(value: Any) -> Any:
    """Inverse of :func:`freeze`."""
    if type(value) is Unhashable:
        return value.value
    if type(value) is tuple:
        return tuple(thaw(v) for v in value)
    return value


def _make_hashable(nodedef: Any) -> Any:
    """Rebuilds a node definition with every unhashable static/metadata value frozen."""
    tag = nodedef[0]
    if tag == NODE:
        _, typ, index, metadata, keys, children = nodedef
        return (NODE, typ, index, freeze(metadata), keys, tuple(_make_hashable(c) for c in children))
    if tag == VAR:
        _, typ, index, items = nodedef
        return (VAR, typ, index, tuple((k, freeze(v)) for k, v in items))
    if tag == STATIC:
        return (STATIC, freeze(nodedef[1]))
    if tag == PYTREE:
        _, kind, aux, keys, children = nodedef
        return (PYTREE, kind, freeze(aux), freeze(keys), tuple(_make_hashable(c) for c in children))
    return nodedef


class GraphDef(Generic[Node]):
    """Immutable, hashable description of an object graph's structure (no array values).

    Two graphs with the same types, attribute names, static values, Variable metadata and
    sharing pattern have equal GraphDefs, so a GraphDef works as a static ``jax.jit``
    argument and as a cache key.

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.core import Object, Param, graphdef
        >>> class Foo(Object):
        ...     def __init__(self):
        ...         self.w = Param(jnp.ones(3))
        >>> graphdef(Foo()) == graphdef(Foo())
        True
    """

    __slots__ = ("_root", "_hash", "num_leaves", "_paths", "_derived")

    def __init__(self, root: Any, num_leaves: int, paths: tuple[tuple[Any, ...], ...] | None = None):
        object.__setattr__(self, "_root", root)
        object.__setattr__(self, "_hash", None)  # computed on first use (split never needs it)
        object.__setattr__(self, "num_leaves", num_leaves)
        object.__setattr__(self, "_paths", paths)
        # Things compiled from the structure on first use (build plan, leaf slots, State
        # layouts; see _graph_build). Not part of equality.
        object.__setattr__(self, "_derived", {})

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("GraphDef is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("GraphDef is immutable")

    def _compute_hash(self) -> int:
        root = self._root
        try:
            h = hash(root)
        except TypeError:  # unhashable statics/metadata: wrap them (compared by identity)
            root = _make_hashable(root)
            object.__setattr__(self, "_root", root)
            h = hash(root)
        object.__setattr__(self, "_hash", h)
        return h

    def __hash__(self) -> int:
        h = self._hash
        return self._compute_hash() if h is None else h

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, GraphDef):
            return NotImplemented
        if self.num_leaves != other.num_leaves or hash(self) != hash(other):
            return False
        return bool(self._root == other._root)

    @property
    def paths(self) -> tuple[tuple[Any, ...], ...]:
        """The path of every leaf, in leaf order (the first path of shared Variables)."""
        if self._paths is None:
            paths: list[tuple[Any, ...]] = []
            _collect_paths(self._root, (), paths)
            object.__setattr__(self, "_paths", tuple(paths))
        return self._paths  # type: ignore[return-value]

    @property
    def root_type(self) -> type:
        """The type of the root node (or of the root leaf's container)."""
        root = self._root
        if root[0] in (NODE, VAR, PYTREE):
            return root[1]  # type: ignore[no-any-return]
        return type(None)

    def with_no_outer_index(self) -> GraphDef[Node]:
        return self

    def with_same_outer_index(self) -> GraphDef[Node]:
        return self

    def with_matching_outer_index(self, other: Any) -> GraphDef[Node]:
        return self

    def apply(self, state: Any, *states: Any, graph: bool | None = None) -> Any:
        """``graphdef.apply(state).method(*args)`` -> ``(output, (graphdef, new_state))``."""
        from ._graph import ApplyCaller  # the graph layer depends on this module

        return ApplyCaller(self, (state, *states))

    def __repr__(self) -> str:
        lines: list[str] = []
        _render(self._root, lines, 0, "")
        return "GraphDef(\n" + "\n".join(lines) + f"\n)  # {self.num_leaves} leaves"

    def __copy__(self) -> GraphDef[Node]:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> GraphDef[Node]:
        return self

    def __reduce__(self) -> Any:
        raise TypeError("GraphDef is not picklable (plait never pickles).")


# A GraphDef is a pytree with no children (itself as aux data), so a function under
# ``jax.jit`` can return one, and it can sit inside the pytrees passed to JAX transforms.
jax.tree_util.register_pytree_node(GraphDef, lambda g: ((), g), lambda g, _: g)


def _collect_paths(nodedef: Any, path: tuple[Any, ...], out: list[tuple[Any, ...]]) -> None:
    tag = nodedef[0]
    if tag == VAR or tag == LEAF:
        out.append(path)
    elif tag == NODE:
        for key, child in zip(nodedef[4], nodedef[5], strict=False):
            _collect_paths(child, path + (key,), out)
    elif tag == PYTREE:
        for key, child in zip(nodedef[3], nodedef[4], strict=False):
            _collect_paths(child, path + (key,), out)


def _render(nodedef: Any, lines: list[str], depth: int, label: str) -> None:
    pad = "  " * (depth + 1)
    tag = nodedef[0]
    if tag == NODE:
        lines.append(f"{pad}{label}{nodedef[1].__name__}[{nodedef[2]}]")
        for key, child in zip(nodedef[4], nodedef[5], strict=False):
            _render(child, lines, depth + 1, f"{key}: ")
    elif tag == VAR:
        meta = f" {dict(nodedef[3])}" if nodedef[3] else ""
        lines.append(f"{pad}{label}{nodedef[1].__name__}[{nodedef[2]}]{meta}")
    elif tag == REF:
        lines.append(f"{pad}{label}-> [{nodedef[1]}]")
    elif tag == LEAF:
        lines.append(f"{pad}{label}<array>")
    elif tag == STATIC:
        lines.append(f"{pad}{label}{thaw(nodedef[1])!r}")
    else:
        kind = nodedef[1]
        name = kind.__name__ if isinstance(kind, type) else str(kind)
        lines.append(f"{pad}{label}{name}")
        for key, child in zip(nodedef[3], nodedef[4], strict=False):
            _render(child, lines, depth + 1, f"{key}: ")


# -- node-type registry ------------------------------------------------------------------------


class GraphNodeImpl:
    """How to take apart and rebuild one graph-node type (by reference, mutable)."""

    __slots__ = ("type", "flatten", "set_key", "pop_key", "create_empty", "clear", "init")

    def __init__(
        self,
        type: type,  # noqa: A002 - Flax's parameter name
        flatten: Callable[[Any], tuple[Sequence[tuple[Any, Any]], Any]],
        set_key: Callable[[Any, Any, Any], None],
        pop_key: Callable[[Any, Any], Any],
        create_empty: Callable[[Any], Any],
        clear: Callable[[Any], None],
        init: Callable[[Any, Iterable[tuple[Any, Any]]], None] | None,
    ):
        self.type = type
        self.flatten = flatten
        self.set_key = set_key
        self.pop_key = pop_key
        self.create_empty = create_empty
        self.clear = clear
        self.init = init

    def __repr__(self) -> str:
        return f"GraphNodeImpl(type={self.type.__name__})"


GRAPH_REGISTRY: dict[type, GraphNodeImpl] = {}
# type -> impl of its nearest registered ancestor, or None; cleared on registration.
_IMPL_CACHE: dict[type, GraphNodeImpl | None] = {}
# type -> how the graph layer treats its instances (see _graph._value_kind); cleared on
# registration. Types registered with JAX as pytrees *after* their first use here keep
# their earlier classification.
KIND_CACHE: dict[type, int] = {}


def register_graph_node_type(
    type: type,  # noqa: A002 - Flax's parameter name
    flatten: Callable[[Any], tuple[Sequence[tuple[Any, Any]], Any]],
    set_key: Callable[[Any, Any, Any], None],
    pop_key: Callable[[Any, Any], Any],
    create_empty: Callable[[Any], Any],
    clear: Callable[[Any], None],
    init: Callable[[Any, Iterable[tuple[Any, Any]]], None] | None = None,
) -> None:
    """Makes ``type`` (and its subclasses) a graph node: flattened by reference.

    Args:
        type: the class.
        flatten: ``node -> (sequence of (key, child), metadata)``; metadata must be hashable
            and is passed to ``create_empty``.
        set_key: ``(node, key, child) -> None``.
        pop_key: ``(node, key) -> child`` (removes it).
        create_empty: ``metadata -> node`` with no children yet.
        clear: ``node -> None`` removes every child.
        init: optional ``(node, iterable of (key, child)) -> None`` that sets all children at
            once (faster than repeated ``set_key``).

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.core import Param, register_graph_node_type, split, merge
        >>> class Bag:
        ...     def __init__(self): self.items = {}
        >>> register_graph_node_type(
        ...     Bag,
        ...     flatten=lambda b: (sorted(b.items.items()), None),
        ...     set_key=lambda b, k, v: b.items.__setitem__(k, v),
        ...     pop_key=lambda b, k: b.items.pop(k),
        ...     create_empty=lambda _: Bag(),
        ...     clear=lambda b: b.items.clear(),
        ... )
        >>> bag = Bag(); bag.items["w"] = Param(jnp.ones(2))
        >>> merge(*split(bag)).items["w"].shape
        (2,)
    """
    GRAPH_REGISTRY[type] = GraphNodeImpl(type, flatten, set_key, pop_key, create_empty, clear, init)
    _IMPL_CACHE.clear()
    KIND_CACHE.clear()


def graph_impl_for_type(typ: type) -> GraphNodeImpl | None:
    """The graph-node implementation for ``typ`` (looked up along its MRO), or ``None``."""
    try:
        return _IMPL_CACHE[typ]
    except KeyError:
        pass
    impl = None
    for klass in typ.__mro__:
        impl = GRAPH_REGISTRY.get(klass)
        if impl is not None:
            break
    _IMPL_CACHE[typ] = impl
    return impl


def is_graph_node(x: Any) -> bool:
    """Whether ``x`` is flattened by reference (an Object or a registered graph-node type)."""
    return graph_impl_for_type(type(x)) is not None


def is_node_type(x: type) -> bool:
    """Whether instances of ``x`` are graph nodes or pytree containers.

    Examples:
        >>> from plait.core import Rngs, is_node_type
        >>> is_node_type(Rngs), is_node_type(list), is_node_type(int)
        (True, True, False)
    """
    return graph_impl_for_type(x) is not None or pytree_impl_for_type(x) is not None


# -- pytree node types (rebuilt by value) --------------------------------------------------------


class PytreeNodeImpl:
    """How the graph layer sees a pytree container type (rebuilt by value, not by reference).

    ``flatten(node) -> (sequence of (key, child), aux)``; ``unflatten(sequence of (key,
    child), aux) -> node``; ``set_key``/``pop_key`` edit a mutable container (``None`` when
    the type is immutable).
    """

    __slots__ = ("type", "flatten", "unflatten", "set_key", "pop_key")

    def __init__(
        self,
        type: type,  # noqa: A002 - Flax's parameter name
        flatten: Callable[[Any], tuple[Sequence[tuple[Any, Any]], Any]],
        unflatten: Callable[[Sequence[tuple[Any, Any]], Any], Any],
        set_key: Callable[[Any, Any, Any], None] | None,
        pop_key: Callable[[Any, Any], Any] | None,
    ):
        self.type = type
        self.flatten = flatten
        self.unflatten = unflatten
        self.set_key = set_key
        self.pop_key = pop_key

    def node_dict(self, node: Any) -> dict[Any, Any]:
        return dict(self.flatten(node)[0])

    def __repr__(self) -> str:
        return f"PytreeNodeImpl(type={self.type.__name__})"


def _dict_pop(d: dict[Any, Any], key: Any) -> Any:
    return d.pop(key)


def _list_pop(xs: list[Any], key: int) -> Any:
    return xs.pop(key)


PYTREE_REGISTRY: dict[type, PytreeNodeImpl] = {
    list: PytreeNodeImpl(list, lambda xs: (list(enumerate(xs)), None),
                         lambda items, _: [v for _, v in items], list.__setitem__, _list_pop),
    tuple: PytreeNodeImpl(tuple, lambda xs: (list(enumerate(xs)), None),
                          lambda items, _: tuple(v for _, v in items), None, None),
    dict: PytreeNodeImpl(dict, lambda d: (sorted(d.items(), key=_sort_key), None),
                         lambda items, _: dict(items), dict.__setitem__, _dict_pop),
}


def _sort_key(item: tuple[Any, Any]) -> Any:
    key = item[0]
    return (0, "", key) if isinstance(key, int) else (1, type(key).__name__, str(key))


def _jax_pytree_impl(typ: type) -> PytreeNodeImpl:
    """A read-only impl for a type registered with JAX only (children by JAX's key paths)."""

    def flatten(node: Any) -> tuple[list[tuple[Any, Any]], Any]:
        return _compat.flatten_one_level(node)

    def unflatten(items: Sequence[tuple[Any, Any]], treedef: Any) -> Any:
        return treedef.unflatten([v for _, v in items])

    return PytreeNodeImpl(typ, flatten, unflatten, None, None)


def pytree_impl_for_type(typ: type) -> PytreeNodeImpl | None:
    """The pytree-node implementation of ``typ`` (builtin containers, registered types).

    Types registered with JAX alone are found by :func:`get_node_impl` (it needs an
    instance to ask JAX); this lookup is by type only.
    """
    impl = PYTREE_REGISTRY.get(typ)
    if impl is None:
        for klass in typ.__mro__[1:]:
            if klass in (list, dict):  # TrackedList / TrackedDict
                return PYTREE_REGISTRY[klass]
    return impl


def register_pytree_node_type(
    type: type,  # noqa: A002 - Flax's parameter name
    flatten: Callable[[Any], tuple[Sequence[tuple[Any, Any]], Any]],
    unflatten: Callable[[Sequence[tuple[Any, Any]], Any], Any],
    *,
    set_key: Callable[[Any, Any, Any], None] | None = None,
    pop_key: Callable[[Any, Any], Any] | None = None,
) -> None:
    """Registers ``type`` as a pytree container: with JAX, and with the graph layer.

    Instances are rebuilt by value (like lists and dicts), their children keyed by the keys
    ``flatten`` returns; ``aux`` must be hashable.

    Examples:
        >>> import jax
        >>> from plait.core import register_pytree_node_type
        >>> class Pair:
        ...     def __init__(self, a, b): self.a, self.b = a, b
        >>> register_pytree_node_type(
        ...     Pair,
        ...     flatten=lambda p: ([("a", p.a), ("b", p.b)], None),
        ...     unflatten=lambda items, _: Pair(*(v for _, v in items)),
        ... )
        >>> jax.tree.leaves(Pair(1, 2))
        [1, 2]
    """

    def flatten_with_keys(node: Any) -> tuple[list[tuple[Any, Any]], Any]:
        items, aux = flatten(node)
        items = list(items)
        return [(jax.tree_util.DictKey(k), v) for k, v in items], (tuple(k for k, _ in items), aux)

    def flatten_plain(node: Any) -> tuple[list[Any], Any]:
        items, aux = flatten(node)
        items = list(items)
        return [v for _, v in items], (tuple(k for k, _ in items), aux)

    def unflatten_fn(keys_aux: tuple[tuple[Any, ...], Any], children: Any) -> Any:
        keys, aux = keys_aux
        return unflatten(list(zip(keys, children, strict=True)), aux)

    jax.tree_util.register_pytree_with_keys(type, flatten_with_keys, unflatten_fn, flatten_plain)
    PYTREE_REGISTRY[type] = PytreeNodeImpl(type, flatten, unflatten, set_key, pop_key)
    KIND_CACHE.clear()


def get_node_impl_for_type(x: type) -> GraphNodeImpl | PytreeNodeImpl | None:
    """The graph-node or pytree-node implementation of a type, or ``None`` (a leaf type).

    Examples:
        >>> from plait.core import Rngs, get_node_impl_for_type
        >>> get_node_impl_for_type(Rngs), get_node_impl_for_type(list)
        (GraphNodeImpl(type=Object), PytreeNodeImpl(type=list))
    """
    impl = graph_impl_for_type(x)
    if impl is not None:
        return impl
    return pytree_impl_for_type(x)


def get_node_impl(x: Any) -> GraphNodeImpl | PytreeNodeImpl | None:
    """The implementation that takes ``x`` apart (graph node, pytree container), or ``None``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.core import get_node_impl
        >>> get_node_impl({"a": 1}), get_node_impl(jnp.ones(2))
        (PytreeNodeImpl(type=dict), None)
    """
    impl = get_node_impl_for_type(type(x))
    if impl is not None:
        return impl
    if x is None or _compat.is_array(x) or not _compat.is_jax_pytree_node(x):
        return None
    from ._variable import Variable

    if isinstance(x, Variable):
        return None
    return _jax_pytree_impl(type(x))
