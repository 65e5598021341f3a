"""Filters (``nnx.filterlib``): predicates over ``(path, value)`` that name subsets of state.

A filter is a Variable type, a collection-name or tag string, a callable
``(path, value) -> bool``, ``True``/``False``, ``...``, ``None`` or a list/tuple of
filters (union); ``to_predicate`` turns any of them into a predicate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any as _TypingAny
from typing import Protocol

from plait.core import All as All
from plait.core import Any as Any
from plait.core import Everything as Everything
from plait.core import Filter as Filter
from plait.core import Not as Not
from plait.core import Nothing as Nothing
from plait.core import OfType as OfType
from plait.core import PathContains as PathContains
from plait.core import WithTag as WithTag
from plait.core import to_predicate as to_predicate

Predicate = Callable[[tuple, _TypingAny], bool]
FilterLiteral = Filter


class HasTag(Protocol):
    """Anything with a ``tag`` attribute (RNG streams' Variables), as ``WithTag`` matches."""

    tag: str


class PathIn:
    """Matches values whose path is one of ``paths``.

    Example:
      >>> PathIn(("a", 0), ("b",))(("b",), None)
      True
    """

    def __init__(self, *paths: tuple):
        self.paths = frozenset(tuple(p) for p in paths)

    def __call__(self, path: tuple, x: _TypingAny) -> bool:
        return tuple(path) in self.paths

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PathIn) and other.paths == self.paths

    def __hash__(self) -> int:
        return hash((PathIn, self.paths))

    def __repr__(self) -> str:
        return f"PathIn({', '.join(repr(p) for p in sorted(self.paths, key=repr))})"


def filters_to_predicates(filters: Sequence[Filter]) -> tuple[Predicate, ...]:
    """``to_predicate`` of each filter."""
    return tuple(to_predicate(f) for f in filters)
