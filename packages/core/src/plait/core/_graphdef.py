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
    """Whether instances of ``x`` are graph nodes or pytree containers."""
    return graph_impl_for_type(x) is not None or x in (list, tuple, dict)
