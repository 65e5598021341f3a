"""The filter language: one way to name a subset of state everywhere.

A filter is turned into a predicate ``(path, value) -> bool`` by :func:`to_predicate`:

- a type (``Param``)                 -> ``OfType(Param)`` (``isinstance``)
- a string (``"params"``)            -> Variables whose ``tag`` metadata is that string, or
                                        whose collection name (``variable_name_from_type``
                                        of the type or its nearest registered ancestor) is it
- ``...`` / ``True``                 -> ``Everything()``
- ``None`` / ``False``               -> ``Nothing()``
- a list or tuple of filters         -> ``Any(*filters)``
- any other callable                 -> used as the predicate itself

Predicate objects are immutable, hashable and compare by value, so filters can be dict keys
(``StateAxes``) and parts of static jit arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any as TypingAny

from ._errors import FilterError
from ._variable import collection_name_of

PathParts = tuple[TypingAny, ...]
Predicate = Callable[[PathParts, TypingAny], bool]
Filter = TypingAny  # type | str | Predicate | bool | None | EllipsisType | list | tuple


class _Predicate:
    """Base of predicate objects: value equality and hashing from ``_fields()``.

    ``_structural``: the answer depends only on the path and on the Variable's type and
    metadata (never on its value), so the graph layer may cache it per GraphDef.
    """

    __slots__ = ()
    _structural = True

    def _is_structural(self) -> bool:
        return self._structural

    def _fields(self) -> tuple[TypingAny, ...]:
        return ()

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self._fields() == other._fields()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), self._fields()))

    def __setattr__(self, name: str, value: TypingAny) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")


class OfType(_Predicate):
    """Matches values that are instances of ``type`` (Variables of that kind, arrays...).

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.core import OfType, Param, BatchStat
        >>> OfType(Param)((), Param(jnp.ones(())))
        True
        >>> OfType(Param)((), BatchStat(jnp.ones(())))
        False
    """

    __slots__ = ("type",)

    def __init__(self, type: type):  # noqa: A002 - Flax's parameter name
        object.__setattr__(self, "type", type)

    def __call__(self, path: PathParts, x: TypingAny) -> bool:
        return isinstance(x, self.type)

    def _fields(self) -> tuple[TypingAny, ...]:
        return (self.type,)

    def __repr__(self) -> str:
        return f"OfType({self.type.__name__})"


class WithTag(_Predicate):
    """Matches values whose ``tag`` (e.g. an RNG stream's name) equals ``tag``."""

    __slots__ = ("tag",)

    def __init__(self, tag: str):
        object.__setattr__(self, "tag", tag)

    def __call__(self, path: PathParts, x: TypingAny) -> bool:
        return _tag_of(x) == self.tag

    def _fields(self) -> tuple[TypingAny, ...]:
        return (self.tag,)

    def __repr__(self) -> str:
        return f"WithTag({self.tag!r})"


def _tag_of(x: TypingAny) -> TypingAny:
    metadata = getattr(type(x), "_plait_own_attrs", None)
    if metadata is not None:  # a Variable: read metadata only, never the value's attributes
        return x._var_metadata.get("tag")
    return getattr(x, "tag", None)


class _Named(_Predicate):
    """What a string filter means: a tag or a collection name."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        object.__setattr__(self, "name", name)

    def __call__(self, path: PathParts, x: TypingAny) -> bool:
        if _tag_of(x) == self.name:
            return True
        return hasattr(type(x), "_plait_own_attrs") and collection_name_of(type(x)) == self.name

    def _fields(self) -> tuple[TypingAny, ...]:
        return (self.name,)

    def __repr__(self) -> str:
        return repr(self.name)


class PathContains(_Predicate):
    """Matches values whose path contains ``key`` (``exact=False``: as a substring of a part).

    Examples:
        >>> from plait.core import PathContains
        >>> PathContains("kernel")(("linear", "kernel"), None)
        True
        >>> PathContains("lin", exact=False)(("linear", "bias"), None)
        True
    """

    __slots__ = ("key", "exact")

    def __init__(self, key: TypingAny, exact: bool = True):
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "exact", exact)

    def __call__(self, path: PathParts, x: TypingAny) -> bool:
        if self.exact:
            return self.key in path
        key = str(self.key)
        return any(key in str(part) for part in path)

    def _fields(self) -> tuple[TypingAny, ...]:
        return (self.key, self.exact)

    def __repr__(self) -> str:
        return f"PathContains({self.key!r})" if self.exact else f"PathContains({self.key!r}, exact=False)"


class PathIn(_Predicate):
    """Matches values whose path is one of ``paths``.

    Examples:
        >>> from plait.core import PathIn
        >>> PathIn(("a", 0), ("b",))(("b",), None)
        True
        >>> PathIn(("a", 0))(("a",), None)
        False
    """

    __slots__ = ("paths",)

    def __init__(self, *paths: PathParts):
        object.__setattr__(self, "paths", frozenset(tuple(p) for p in paths))

    def __call__(self, path: PathParts, x: TypingAny) -> bool:
        return tuple(path) in self.paths

    def _fields(self) -> tuple[TypingAny, ...]:
        return (self.paths,)

    def __repr__(self) -> str:
        return f"PathIn({', '.join(repr(p) for p in sorted(self.paths, key=repr))})"


class Any(_Predicate):
    """Matches when at least one of ``filters`` matches."""

    __slots__ = ("predicates",)

    def __init__(self, *filters: Filter):
        object.__setattr__(self, "predicates", tuple(to_predicate(f) for f in filters))

    def __call__(self, path: PathParts, x: TypingAny) -> bool:
        return any(p(path, x) for p in self.predicates)

    def _fields(self) -> tuple[TypingAny, ...]:
        return self.predicates

    def __repr__(self) -> str:
        return f"Any({', '.join(map(repr, self.predicates))})"

    def _is_structural(self) -> bool:
        return all(is_structural(p) for p in self.predicates)


class All(_Predicate):
    """Matches when every one of ``filters`` matches."""

    __slots__ = ("predicates",)

    def __init__(self, *filters: Filter):
        object.__setattr__(self, "predicates", tuple(to_predicate(f) for f in filters))

    def __call__(self, path: PathParts, x: TypingAny) -> bool:
        return all(p(path, x) for p in self.predicates)

    def _fields(self) -> tuple[TypingAny, ...]:
        return self.predicates

    def __repr__(self) -> str:
        return f"All({', '.join(map(repr, self.predicates))})"

    def _is_structural(self) -> bool:
        return all(is_structural(p) for p in self.predicates)


class Not(_Predicate):
    """Matches when ``collection_filter`` does not."""

    __slots__ = ("predicate",)

    def __init__(self, collection_filter: Filter, /):
        object.__setattr__(self, "predicate", to_predicate(collection_filter))

    def __call__(self, path: PathParts, x: TypingAny) -> bool:
        return not self.predicate(path, x)

    def _fields(self) -> tuple[TypingAny, ...]:
        return (self.predicate,)

    def __repr__(self) -> str:
        return f"Not({self.predicate!r})"

    def _is_structural(self) -> bool:
        return is_structural(self.predicate)


class Everything(_Predicate):
    """Matches everything (what ``...`` and ``True`` mean)."""

    __slots__ = ()

    def __call__(self, path: PathParts, x: TypingAny) -> bool:
        return True

    def __repr__(self) -> str:
        return "Everything()"


class Nothing(_Predicate):
    """Matches nothing (what ``None`` and ``False`` mean)."""

    __slots__ = ()

    def __call__(self, path: PathParts, x: TypingAny) -> bool:
        return False

    def __repr__(self) -> str:
        return "Nothing()"


_EVERYTHING = Everything()
_NOTHING = Nothing()


def to_predicate(filter: Filter) -> Predicate:  # noqa: A002 - Flax's parameter name
    """Turns any filter form into a predicate ``(path, value) -> bool``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.core import Param, BatchStat, to_predicate
        >>> to_predicate([Param, BatchStat])
        Any(OfType(Param), OfType(BatchStat))
        >>> to_predicate("params")((), Param(jnp.zeros(())))
        True
        >>> to_predicate(...)
        Everything()
    """
    if isinstance(filter, _Predicate):
        return filter
    if isinstance(filter, type):
        return OfType(filter)
    if isinstance(filter, str):
        return _Named(filter)
    if filter is Ellipsis or filter is True:
        return _EVERYTHING
    if filter is None or filter is False:
        return _NOTHING
    if isinstance(filter, (list, tuple)):
        return Any(*filter)
    if callable(filter):
        return filter
    raise FilterError(
        f"Invalid filter {filter!r} of type {type(filter).__name__}. A filter is a Variable "
        "type, a collection name or tag string, `...`/True (everything), None/False "
        "(nothing), a callable (path, value) -> bool, or a list/tuple of filters."
    )


def is_structural(predicate: TypingAny) -> bool:
    """Whether ``predicate`` looks only at paths and Variable types/metadata (never values).

    True for the built-in predicates (types, tags and collection names, paths, and their
    combinations); False for arbitrary callables.
    """
    return isinstance(predicate, _Predicate) and predicate._is_structural()


def filters_to_predicates(filters: tuple[Filter, ...] | list[Filter]) -> tuple[Predicate, ...]:
    """Predicates for a split; only the last filter may match everything (``...``).

    Examples:
        >>> from plait.core import Param, filters_to_predicates
        >>> filters_to_predicates((Param, ...))
        (OfType(Param), Everything())
    """
    predicates = tuple(to_predicate(f) for f in filters)
    for i, predicate in enumerate(predicates[:-1]):
        if isinstance(predicate, Everything):
            raise FilterError(
                f"Filter number {i} of {filters!r} matches everything, so the filters after it "
                "would receive nothing. Fix: put `...` (or True) last."
            )
    return predicates
