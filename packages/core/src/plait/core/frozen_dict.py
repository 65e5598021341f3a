"""An immutable, hashable nested mapping that is a JAX pytree (``flax.core.frozen_dict``).

Nested plain dicts are converted to ``FrozenDict`` once, on construction, so reading is a
plain dict lookup. Children are flattened in sorted key order with ``DictKey`` paths, as
``dict`` is.

Example:
  >>> from plait.core.frozen_dict import freeze, unfreeze
  >>> params = freeze({'dense': {'kernel': 1, 'bias': 0}})
  >>> params['dense']['kernel']
  1
  >>> new_params, bias = params['dense'].pop('bias')
  >>> unfreeze(params.copy({'extra': 2}))
  {'dense': {'kernel': 1, 'bias': 0}, 'extra': 2}
"""

from __future__ import annotations

from collections.abc import Hashable, ItemsView, KeysView, Mapping, ValuesView
from types import MappingProxyType
from typing import Any, TypeVar

import jax

from . import serialization

__all__ = [
    "FrozenDict",
    "FrozenKeysView",
    "FrozenValuesView",
    "copy",
    "freeze",
    "pop",
    "pretty_repr",
    "unfreeze",
]

K = TypeVar("K")
V = TypeVar("V")


class FrozenKeysView(KeysView):
    """The keys of a ``FrozenDict``."""

    def __repr__(self) -> str:
        return f"frozen_dict_keys({list(self)})"


class FrozenValuesView(ValuesView):
    """The values of a ``FrozenDict``."""

    def __repr__(self) -> str:
        return f"frozen_dict_values({list(self)})"


def _freeze_value(value: Any) -> Any:
    if isinstance(value, dict):
        return FrozenDict(value)
    return value


class FrozenDict(Mapping[K, V]):
    """An immutable mapping; nested dicts become ``FrozenDict`` too.

    Hashable when its values are. Equal to any mapping with equal items.

    Example:
      >>> import jax
      >>> from plait.core import FrozenDict
      >>> fd = FrozenDict(a=1, b={'c': 2})
      >>> jax.tree.map(lambda x: x * 10, fd)
      FrozenDict({
          a: 10,
          b: {
              c: 20,
          },
      })
    """

    __slots__ = ("_dict", "_hash")

    def __init__(self, *args, __unsafe_skip_copy__=False, **kwargs):
        if __unsafe_skip_copy__ and len(args) == 1 and not kwargs and type(args[0]) is dict:
            # The caller hands over ownership (pytree unflattening does): keep its dict
            # unless a value still needs freezing.
            raw = args[0]
            if any(isinstance(v, dict) for v in raw.values()):
                raw = {k: _freeze_value(v) for k, v in raw.items()}
        else:
            raw = {k: _freeze_value(v) for k, v in dict(*args, **kwargs).items()}
        self._dict: dict[K, V] = raw
        self._hash: int | None = None

    def __getitem__(self, key: K) -> V:
        return self._dict[key]

    def __setitem__(self, key, value):
        raise ValueError(
            f"FrozenDict is immutable: cannot set key {key!r}. Use "
            "`frozen.copy({key: value})` for an updated copy, or `unfreeze(frozen)` for a "
            "mutable dict."
        )

    def __contains__(self, key) -> bool:
        return key in self._dict

    def __iter__(self):
        return iter(self._dict)

    def __len__(self) -> int:
        return len(self._dict)

    def __repr__(self) -> str:
        return self.pretty_repr()

    def __reduce__(self):
        # Lets copy.copy / copy.deepcopy rebuild a FrozenDict from a plain dict.
        return FrozenDict, (self.unfreeze(),)

    def __hash__(self) -> int:
        if self._hash is None:
            h = 0
            for item in self._dict.items():
                h ^= hash(item)
            self._hash = h
        return self._hash

    def get(self, key, default=None):
        return self._dict.get(key, default)

    def keys(self) -> FrozenKeysView:
        return FrozenKeysView(self)

    def values(self) -> FrozenValuesView:
        return FrozenValuesView(self)

    def items(self) -> ItemsView:
        return ItemsView(self)

    def pretty_repr(self, num_spaces=4) -> str:
        """A multi-line, indented representation: ``FrozenDict({ key: value, ... })``."""
        return f"FrozenDict({_pretty(self, num_spaces)})"

    def copy(self, add_or_replace: Mapping[K, V] = MappingProxyType({})) -> FrozenDict[K, V]:
        """A new FrozenDict with the entries of ``add_or_replace`` added or replaced."""
        return type(self)({**self._dict, **add_or_replace})

    def pop(self, key: K) -> tuple[FrozenDict[K, V], V]:
        """Returns ``(copy without key, value of key)``; raises ``KeyError`` if absent."""
        value = self._dict[key]
        rest = {k: v for k, v in self._dict.items() if k != key}
        return type(self)(rest, __unsafe_skip_copy__=True), value

    def unfreeze(self) -> dict[K, V]:
        """A deep copy as nested plain dicts."""
        return unfreeze(self)

    def tree_flatten_with_keys(self) -> tuple[tuple[Any, ...], Hashable]:
        """Children in sorted key order, each with its ``jax.tree_util.DictKey``."""
        keys = tuple(sorted(self._dict))
        return tuple((jax.tree_util.DictKey(k), self._dict[k]) for k in keys), keys

    @classmethod
    def tree_unflatten(cls, keys, values):
        return cls(dict(zip(keys, values, strict=True)), __unsafe_skip_copy__=True)


def _flatten(fd: FrozenDict) -> tuple[tuple[Any, ...], tuple]:
    keys = tuple(sorted(fd._dict))
    return tuple(fd._dict[k] for k in keys), keys


jax.tree_util.register_pytree_with_keys(
    FrozenDict,
    lambda fd: fd.tree_flatten_with_keys(),
    FrozenDict.tree_unflatten,
    flatten_func=_flatten,
)


_EMPTY: FrozenDict[Any, Any] = FrozenDict({})


def _pretty(x: Any, num_spaces: int) -> str:
    if not isinstance(x, (dict, FrozenDict)):
        return repr(x)
    if not x:
        return "{}"
    pad = " " * num_spaces
    lines = []
    for key, value in x.items():
        entry = f"{key}: {_pretty(value, num_spaces)},"
        lines.extend(pad + line for line in entry.split("\n"))
    return "{\n" + "\n".join(lines) + "\n}"


def freeze(xs: Mapping[Any, Any]) -> FrozenDict[Any, Any]:
    """Converts a (nested) mapping to a ``FrozenDict``.

    Example:
      >>> from plait.core.frozen_dict import freeze
      >>> hash(freeze({'a': {'b': 1}})) == hash(freeze({'a': {'b': 1}}))
      True
    """
    return FrozenDict(xs)


def unfreeze(x: FrozenDict | dict[str, Any]) -> dict[Any, Any]:
    """Converts a (nested) ``FrozenDict`` or dict to fresh nested plain dicts.

    Anything else is returned unchanged.

    Example:
      >>> from plait.core.frozen_dict import freeze, unfreeze
      >>> unfreeze(freeze({'a': {'b': 1}}))
      {'a': {'b': 1}}
    """
    if isinstance(x, (FrozenDict, dict)):
        source = x._dict if isinstance(x, FrozenDict) else x
        return {k: unfreeze(v) for k, v in source.items()}
    return x


def copy(
    x: FrozenDict | dict[str, Any],
    add_or_replace: FrozenDict[str, Any] | dict[str, Any] = _EMPTY,
) -> FrozenDict | dict[str, Any]:
    """A copy of ``x`` (same kind: FrozenDict or dict) with entries added or replaced.

    Example:
      >>> from plait.core.frozen_dict import copy
      >>> copy({'a': 1}, {'b': 2})
      {'a': 1, 'b': 2}
    """
    if isinstance(x, FrozenDict):
        return x.copy(add_or_replace)
    if isinstance(x, dict):
        new = unfreeze(x)
        new.update(add_or_replace)
        return new
    raise TypeError(f"copy expects a FrozenDict or dict, got {type(x).__name__}.")


def pop(x: FrozenDict | dict[str, Any], key: str) -> tuple[FrozenDict | dict[str, Any], Any]:
    """Returns ``(copy of x without key, x[key])``; ``x`` itself is not modified.

    Example:
      >>> from plait.core.frozen_dict import pop
      >>> pop({'a': 1, 'b': 2}, 'a')
      ({'b': 2}, 1)
    """
    if isinstance(x, FrozenDict):
        return x.pop(key)
    if isinstance(x, dict):
        new = unfreeze(x)
        value = new.pop(key)
        return new, value
    raise TypeError(f"pop expects a FrozenDict or dict, got {type(x).__name__}.")


def pretty_repr(x: Any, num_spaces: int = 4) -> str:
    """A multi-line representation of nested dicts / FrozenDicts (others use ``repr``).

    Example:
      >>> from plait.core.frozen_dict import pretty_repr
      >>> print(pretty_repr({'a': {'b': 1}}, num_spaces=2))
      {
        a: {
          b: 1,
        },
      }
    """
    if isinstance(x, FrozenDict):
        return x.pretty_repr(num_spaces)
    return _pretty(x, num_spaces)


def _to_state(xs: FrozenDict) -> dict[str, Any]:
    return {str(k): serialization.to_state_dict(v) for k, v in xs.items()}


def _from_state(xs: FrozenDict, state: Any) -> FrozenDict:
    serialization._expect_dict(state, xs)
    serialization._check_keys(state, [str(k) for k in xs], xs)
    return FrozenDict(
        {k: serialization.from_state_dict(v, state[str(k)], name=str(k)) for k, v in xs.items()}
    )


serialization.register_serialization_state(FrozenDict, _to_state, _from_state)
