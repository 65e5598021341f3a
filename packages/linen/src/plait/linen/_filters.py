"""Collection filters: the small language that names a set of collections (or RNG streams).

A filter is ``True`` (everything), ``False`` (nothing), a collection name, a collection of
names, or ``DenyList(filter)`` (everything the inner filter does not match). Linen uses it
for ``mutable=``, lifted-transform ``variable_axes`` / ``split_rngs`` keys, ... Each Linen
collection name is also the name of a plait.core Variable type (``"params"`` is ``Param``),
see :func:`collection_type`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from ._errors import InvalidFilterError


@dataclasses.dataclass(frozen=True, eq=True)
class DenyList:
    """Filter matching every collection *except* those matched by ``deny``.

    Examples:
        >>> from plait.linen import DenyList
        >>> f = DenyList('intermediates')
        >>> from plait.linen._filters import in_filter
        >>> in_filter(f, 'params'), in_filter(f, 'intermediates')
        (True, False)
    """

    deny: Any

    def __lt__(self, other: Any) -> bool:  # gives filters a total order for sorting/hashing
        return repr(self) < repr(other)

    def __gt__(self, other: Any) -> bool:
        return repr(self) > repr(other)


DENY_INTERMEDIATES = DenyList("intermediates")
"""The default ``mutable`` of ``init``: every collection except ``intermediates``."""

CollectionFilter = bool | str | Collection[str] | DenyList
PRNGSequenceFilter = CollectionFilter
Filter = CollectionFilter


def _check(filter_like: Any) -> None:
    if isinstance(filter_like, (bool, str, DenyList)):
        return
    if isinstance(filter_like, Collection) and all(isinstance(x, str) for x in filter_like):
        return
    raise InvalidFilterError(filter_like)


def in_filter(filter_like: Filter, col: str) -> bool:
    """Whether the collection name ``col`` is matched by ``filter_like``."""
    if isinstance(filter_like, bool):
        return filter_like
    if isinstance(filter_like, str):
        return col == filter_like
    if isinstance(filter_like, DenyList):
        return not in_filter(filter_like.deny, col)
    _check(filter_like)
    return col in filter_like


def filter_to_set(filter_like: Filter) -> set[str]:
    """The set of names of a finite filter (not ``True`` nor a DenyList)."""
    if filter_like is False:
        return set()
    if isinstance(filter_like, str):
        return {filter_like}
    if filter_like is True or isinstance(filter_like, DenyList):
        raise InvalidFilterError(filter_like)
    _check(filter_like)
    return set(filter_like)


def is_filter_empty(filter_like: Filter) -> bool:
    """Whether the filter matches no name at all."""
    if isinstance(filter_like, DenyList):
        return filter_like.deny is True
    if isinstance(filter_like, bool):
        return not filter_like
    if isinstance(filter_like, str):
        return False
    _check(filter_like)
    return len(filter_like) == 0


def union_filters(a: Filter, b: Filter) -> Filter:
    """A filter matching what ``a`` or ``b`` matches."""
    if a is True or b is True:
        return True
    if isinstance(a, DenyList) and isinstance(b, DenyList):
        return DenyList(intersect_filters(a.deny, b.deny))
    if isinstance(b, DenyList):
        a, b = b, a
    if isinstance(a, DenyList):
        return DenyList(subtract_filters(a.deny, b))
    return filter_to_set(a) | filter_to_set(b)


def intersect_filters(a: Filter, b: Filter) -> Filter:
    """A filter matching what both ``a`` and ``b`` match."""
    if a is True:
        return b
    if b is True:
        return a
    if a is False or b is False:
        return False
    if isinstance(a, DenyList) and isinstance(b, DenyList):
        return DenyList(union_filters(a.deny, b.deny))
    if isinstance(b, DenyList):
        a, b = b, a
    if isinstance(a, DenyList):
        return subtract_filters(b, a.deny)
    return filter_to_set(a) & filter_to_set(b)


def subtract_filters(a: Filter, b: Filter) -> Filter:
    """A filter matching what ``a`` matches and ``b`` does not."""
    if b is True:
        return False
    if b is False:
        return a
    if isinstance(b, DenyList):
        return intersect_filters(a, b.deny)
    if a is True:
        return DenyList(b)
    if isinstance(a, DenyList):
        return DenyList(union_filters(a.deny, b))
    return filter_to_set(a) - filter_to_set(b)


def group_collections(
    xs: Mapping[str, Any], col_filters: Sequence[Filter]
) -> tuple[dict[str, Any], ...]:
    """Splits a variables dict into one dict per filter; each collection goes to the first
    filter that matches it, collections matched by none are left out."""
    groups: list[dict[str, Any]] = [{} for _ in col_filters]
    for col, value in xs.items():
        for group, col_filter in zip(groups, col_filters, strict=True):
            if in_filter(col_filter, col):
                group[col] = value
                break
    return tuple(groups)


def first_match(names: Iterable[str], filters: Sequence[Filter]) -> dict[str, int]:
    """For each name, the index of the first filter matching it (names matching none are
    left out)."""
    out: dict[str, int] = {}
    for name in names:
        for i, f in enumerate(filters):
            if in_filter(f, name):
                out[name] = i
                break
    return out
