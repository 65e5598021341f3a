"""Prefix markers and prefix broadcasting for the lifted transforms.

A *prefix* (``in_axes``, ``in_shardings``, ``argnums``...) assigns a value to every leaf of
the arguments, as JAX prefixes do; at a graph node it may be a filter mapping
(:class:`StateAxes`, :class:`StateSharding`, :class:`DiffState`) that gives each Variable
of the node its own value. :class:`Carry` marks scan's carried argument / state. The
engine stops flattening arguments at graph nodes and Variables (:func:`is_lift_leaf`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax

from .._filters import to_predicate
from .._graphdef import graph_impl_for_type
from .._object import Object
from .._state import State
from .._variable import Variable
from ._errors import NO_FILTER_MATCH, PREFIX_MISMATCH, PrefixError

PathParts = tuple[Any, ...]

# -- prefix markers ------------------------------------------------------------------------


class Carry:
    """Marks the loop-carried argument in ``scan``'s ``in_axes`` / ``out_axes``.

    Used as the class itself: ``in_axes=(Carry, 0)``; inside :class:`StateAxes` it marks
    the state that is carried from one iteration to the next.

    Examples:
        >>> from plait.core import Carry, StateAxes, Param
        >>> StateAxes({Param: 0, ...: Carry}).axes
        (0, <class 'plait.core.Carry'>)
    """


class PrefixMapping:
    """Base of the filter mappings that give each Variable of a graph node its own prefix."""

    def map_prefix(self, path: PathParts, variable: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


class _FilterMapping(PrefixMapping, Mapping[Any, Any]):
    """An ordered ``{filter: value}`` mapping; the first filter that matches a Variable wins."""

    __slots__ = ("_filters", "_values", "_predicates")
    _what = "value"

    def __init__(self, filter_values: Any, /):
        if isinstance(filter_values, State):
            pairs = [
                (_PathIs(path), leaf)
                for path, leaf in zip(*_state_paths_and_leaves(filter_values), strict=False)
            ]
        elif isinstance(filter_values, Mapping):
            pairs = list(filter_values.items())
        else:
            pairs = [tuple(pair) for pair in filter_values]
        self._filters = tuple(f for f, _ in pairs)
        self._values = tuple(v for _, v in pairs)
        self._predicates = tuple(to_predicate(f) for f in self._filters)

    @property
    def filters(self) -> tuple[Any, ...]:
        return self._filters

    def map_prefix(self, path: PathParts, variable: Any) -> Any:
        for predicate, value in zip(self._predicates, self._values, strict=False):
            if predicate(path, variable):
                return value
        raise PrefixError(
            NO_FILTER_MATCH.format(
                transform="lifted transform",
                path=path,
                var_type=type(variable).__name__,
                prefix=self,
            )
        )

    def items(self) -> Any:
        return zip(self._filters, self._values, strict=False)

    def __getitem__(self, key: Any) -> Any:
        for f, v in zip(self._filters, self._values, strict=False):
            if f == key:
                return v
        raise KeyError(key)

    def __iter__(self) -> Any:
        return iter(self._filters)

    def __len__(self) -> int:
        return len(self._filters)

    def __eq__(self, other: object) -> bool:
        return (
            type(self) is type(other)
            and self._filters == other._filters  # type: ignore[attr-defined]
            and self._values == other._values  # type: ignore[attr-defined]
        )

    def __hash__(self) -> int:
        try:
            return hash((type(self), self._filters, self._values))
        except TypeError:
            return hash((type(self), len(self._filters)))

    def __repr__(self) -> str:
        inner = ", ".join(f"{_filter_repr(f)}: {_value_repr(v)}" for f, v in self.items())
        return f"{type(self).__name__}({{{inner}}})"


def _filter_repr(f: Any) -> str:
    if f is Ellipsis:
        return "..."
    if isinstance(f, type):
        return f.__name__
    return repr(f)


def _value_repr(v: Any) -> str:
    return "Carry" if v is Carry else repr(v)


class _PathIs:
    """Filter matching exactly one path (used when a State is given as a filter mapping)."""

    __slots__ = ("path",)

    def __init__(self, path: PathParts):
        self.path = tuple(path)

    def __call__(self, path: PathParts, value: Any) -> bool:
        return tuple(path) == self.path

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _PathIs) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    def __repr__(self) -> str:
        return f"PathIs({self.path!r})"


def _state_paths_and_leaves(state: State) -> tuple[list[PathParts], list[Any]]:
    from .._state import flat_paths_and_leaves

    return flat_paths_and_leaves(state)


class StateAxes(_FilterMapping):
    """Per-filter axes for the state of one graph node in ``vmap`` / ``pmap`` / ``scan``.

    Maps filters to an axis (``int``), ``None`` (broadcast) or :class:`Carry` (scan only);
    the first filter matching a Variable decides. Use it in ``in_axes`` / ``out_axes`` at
    the position of an object.

    Examples:
        >>> from plait.core import StateAxes, Param, BatchStat
        >>> axes = StateAxes({Param: 0, BatchStat: None})
        >>> axes
        StateAxes({Param: 0, BatchStat: None})
        >>> axes.axes
        (0, None)
    """

    @property
    def axes(self) -> tuple[Any, ...]:
        return self._values


class StateSharding(_FilterMapping):
    """Per-filter shardings for the state of one graph node in ``jit`` / ``shard_map``.

    Examples:
        >>> from plait.core import StateSharding, Param
        >>> StateSharding({Param: None, ...: None}).shardings
        (None, None)
    """

    @property
    def shardings(self) -> tuple[Any, ...]:
        return self._values


@dataclasses.dataclass(frozen=True)
class DiffState(PrefixMapping):
    """Which Variables of argument ``argnum`` are differentiated (``grad``, ``custom_vjp``).

    Examples:
        >>> from plait.core import DiffState, Param
        >>> DiffState(0, Param).argnum
        0
    """

    argnum: int
    filter: Any

    def map_prefix(self, path: PathParts, variable: Any) -> Any:
        return bool(to_predicate(self.filter)(path, variable))


def is_prefix_leaf(x: Any) -> bool:
    """Whether ``x`` ends a prefix tree (None, Carry, a filter mapping, or any non-container)."""
    return x is None or x is Carry or isinstance(x, PrefixMapping)


# -- graph nodes inside pytrees ----------------------------------------------------------------


def is_graph_node(x: Any) -> bool:
    """Whether ``x`` is flattened by reference (an Object or a registered graph-node type)."""
    return isinstance(x, Object) or graph_impl_for_type(type(x)) is not None


def is_lift_leaf(x: Any) -> bool:
    """Where the engine stops flattening arguments: graph nodes and Variables."""
    return isinstance(x, (Variable, Object)) or graph_impl_for_type(type(x)) is not None


# -- prefix broadcasting -----------------------------------------------------------------------


def broadcast_prefix(
    prefix: Any,
    args: tuple[Any, ...],
    *,
    transform: str,
    name: str,
    what: str = "positional arguments",
) -> list[Any]:
    """One prefix value per lift leaf of ``args`` (in ``tree_flatten(args)`` order).

    ``prefix`` is a value for all arguments, or a tuple/list with one entry per argument;
    each entry may be a pytree prefix of its argument.
    """
    if isinstance(prefix, (tuple, list)) and not isinstance(prefix, PrefixMapping):
        if len(prefix) != len(args):
            raise PrefixError(
                PREFIX_MISMATCH.format(
                    transform=transform,
                    name=name,
                    prefix=prefix,
                    what=what,
                    detail=f"It has {len(prefix)} entries but the function got {len(args)} "
                    f"{what}.",
                )
            )
        per_arg = list(prefix)
    else:
        per_arg = [prefix] * len(args)
    out: list[Any] = []
    for i, (p, arg) in enumerate(zip(per_arg, args, strict=False)):
        out.extend(_broadcast_one(p, arg, transform, name, f"number {i}", prefix))
    return out


def _broadcast_one(prefix: Any, tree: Any, transform: str, name: str, where: str, full: Any) -> list[Any]:
    p_leaves, p_def = jax.tree_util.tree_flatten(prefix, is_leaf=is_prefix_leaf)
    if p_def.num_nodes == 1 and p_def.num_leaves == 1:  # a single value for the whole tree
        return [prefix] * len(jax.tree_util.tree_leaves(tree, is_leaf=is_lift_leaf))
    try:
        subtrees = p_def.flatten_up_to(tree)
    except (ValueError, TypeError) as e:
        raise PrefixError(
            PREFIX_MISMATCH.format(
                transform=transform,
                name=name,
                prefix=full,
                what=f"argument {where}",
                detail=f"JAX says: {e}",
            )
        ) from None
    out: list[Any] = []
    for p, sub in zip(p_leaves, subtrees, strict=False):
        out.extend([p] * len(jax.tree_util.tree_leaves(sub, is_leaf=is_lift_leaf)))
    return out


def broadcast_out_prefix(prefix: Any, out: Any, *, transform: str, name: str) -> list[Any]:
    """One prefix value per lift leaf of the output ``out`` (a prefix of the whole output)."""
    return _broadcast_one(prefix, out, transform, name, "output", prefix)


def resolve_spec(prefix: Any, path: PathParts, variable: Any, *, transform: str, where: str) -> Any:
    """The spec of one Variable: ``prefix`` itself, or what its filter mapping gives it."""
    if isinstance(prefix, PrefixMapping):
        try:
            return prefix.map_prefix(path, variable)
        except PrefixError:
            raise PrefixError(
                NO_FILTER_MATCH.format(
                    transform=transform,
                    path=f"{where}{keystr_parts(path)}",
                    var_type=type(variable).__name__,
                    prefix=prefix,
                )
            ) from None
    return prefix


def keystr_parts(path: PathParts) -> str:
    """``('layers', 0, 'w')`` -> ``.layers[0].w``."""
    parts = []
    for key in path:
        parts.append(f"[{key!r}]" if not isinstance(key, str) or not key.isidentifier() else f".{key}")
    return "".join(parts)


for _public in (Carry, StateAxes, StateSharding, DiffState):
    _public.__module__ = "plait.core"
