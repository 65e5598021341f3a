"""Flattening nested dicts to path-keyed dicts and back (``flax.traverse_util``).

Also ships Flax's deprecated ``Traversal`` classes (``ModelParamTraversal``, ...), which
select and update parts of a nested structure; new code should use ``path_aware_map`` or
``jax.tree_util.tree_map_with_path``.

Example:
  >>> from plait.core import traverse_util
  >>> flat = traverse_util.flatten_dict({'a': {'b': 1, 'c': 2}}, sep='/')
  >>> flat
  {'a/b': 1, 'a/c': 2}
  >>> traverse_util.unflatten_dict(flat, sep='/')
  {'a': {'b': 1, 'c': 2}}
"""

from __future__ import annotations

import abc
import copy
import dataclasses
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import jax

from .frozen_dict import FrozenDict, freeze

__all__ = [
    "ModelParamTraversal",
    "Traversal",
    "TraverseAttr",
    "TraverseCompose",
    "TraverseEach",
    "TraverseFilter",
    "TraverseId",
    "TraverseItem",
    "TraverseMerge",
    "TraverseTree",
    "empty_node",
    "flatten_dict",
    "path_aware_map",
    "unflatten_dict",
]

PathParts = tuple[Any, ...]


class _EmptyNode:
    """Marks an empty sub-dict in a flat dict (``flatten_dict(keep_empty_nodes=True)``)."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "empty_node"

    def __reduce__(self):
        return (_EmptyNode, ())


empty_node = _EmptyNode()


def _is_dict(x: Any) -> bool:
    return isinstance(x, (dict, FrozenDict))


def flatten_dict(xs, keep_empty_nodes=False, is_leaf=None, sep=None):
    """Flattens a nested dict into ``{path: leaf}``.

    Args:
      xs: a dict or FrozenDict, possibly nested.
      keep_empty_nodes: keep empty sub-dicts as ``empty_node`` leaves (so that
        ``unflatten_dict`` restores them).
      is_leaf: ``(path, value) -> bool``; a sub-dict for which it returns True is kept
        whole as a leaf.
      sep: if given, paths are strings joined with ``sep``; otherwise tuples of keys.

    Returns:
      A flat dict in depth-first key order.

    Example:
      >>> from plait.core.traverse_util import flatten_dict
      >>> flatten_dict({'a': {'b': 1}, 'e': {}}, keep_empty_nodes=True)
      {('a', 'b'): 1, ('e',): empty_node}
    """
    if not _is_dict(xs):
        raise TypeError(f"flatten_dict expects a dict or FrozenDict, got {type(xs).__name__}.")

    def key(path: PathParts):
        return path if sep is None else sep.join(path)

    flat: dict = {}

    def visit(node: Any, path: PathParts) -> None:
        if not _is_dict(node) or (is_leaf is not None and is_leaf(path, node)):
            flat[key(path)] = node
            return
        if not node:
            if keep_empty_nodes and path:
                flat[key(path)] = empty_node
            return
        for k, v in node.items():
            visit(v, (*path, k))

    visit(xs, ())
    return flat


def unflatten_dict(xs, sep=None):
    """Inverse of ``flatten_dict``: ``{path: leaf}`` to a nested dict.

    Args:
      xs: a flat dict whose keys are tuples of keys (or strings when ``sep`` is given).
      sep: the separator used by ``flatten_dict``.

    Example:
      >>> from plait.core.traverse_util import unflatten_dict
      >>> unflatten_dict({('a', 'b'): 1, ('c',): 2})
      {'a': {'b': 1}, 'c': 2}
    """
    if not isinstance(xs, Mapping):
        raise TypeError(f"unflatten_dict expects a dict, got {type(xs).__name__}.")
    result: dict = {}
    for path, value in xs.items():
        parts = path.split(sep) if sep is not None else path
        if value is empty_node:
            value = {}
        cursor = result
        for depth, part in enumerate(parts[:-1]):
            child = cursor.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(
                    f"unflatten_dict: path {path!r} goes through {tuple(parts[: depth + 1])!r}, "
                    "which is already a leaf. A path cannot be both a leaf and a prefix of "
                    "another path."
                )
            cursor = child
        cursor[parts[-1]] = value
    return result


def path_aware_map(f: Callable[[PathParts, Any], Any], nested_dict) -> dict:
    """Maps ``f(path, leaf)`` over the leaves of a nested dict; empty sub-dicts survive.

    Example:
      >>> from plait.core.traverse_util import path_aware_map
      >>> path_aware_map(lambda path, x: x * 10 if 'kernel' in path else x,
      ...                {'dense': {'kernel': 1, 'bias': 1}})
      {'dense': {'kernel': 10, 'bias': 1}}
    """
    flat = flatten_dict(nested_dict, keep_empty_nodes=True)
    return unflatten_dict({k: v if v is empty_node else f(k, v) for k, v in flat.items()})


# --------------------------------------------------------------------------- Traversal
# Deprecated in Flax in favour of optax's masking and tree_map_with_path; kept so that
# ported code runs.


class Traversal(abc.ABC):
    """Selects parts of a structure: ``iterate`` them or ``update`` them functionally.

    Deprecated (as in Flax): use ``path_aware_map`` or ``jax.tree_util`` path functions.
    """

    def __init__(self):
        warnings.warn(
            "plait.core.traverse_util.Traversal is deprecated (as in Flax): use "
            "traverse_util.path_aware_map or jax.tree_util.tree_map_with_path, and "
            "optax.masked for per-parameter optimizers.",
            DeprecationWarning,
            stacklevel=3,
        )

    @abc.abstractmethod
    def update(self, fn, inputs):
        """Returns ``inputs`` with every selected part replaced by ``fn(part)``."""

    @abc.abstractmethod
    def iterate(self, inputs):
        """Yields the selected parts of ``inputs``."""

    def set(self, values, inputs):
        """Replaces the selected parts, in ``iterate`` order, by ``values``."""
        remaining = list(values)
        count = len(remaining)

        def take(_):
            if not remaining:
                raise ValueError(
                    f"Traversal.set got {count} values but the traversal selects more."
                )
            return remaining.pop(0)

        result = self.update(take, inputs)
        if remaining:
            raise ValueError(
                f"Traversal.set got {count} values but the traversal selects only "
                f"{count - len(remaining)}."
            )
        return result

    def compose(self, other):
        """Applies ``other`` to each part selected by this traversal."""
        return TraverseCompose(self, other)

    def merge(self, *traversals):
        """Selects the union of this traversal's and ``traversals``' parts."""
        return TraverseMerge(self, *traversals)

    def each(self):
        """Then each element of the selected sequence."""
        return self.compose(TraverseEach())

    def tree(self):
        """Then each leaf of the selected pytree."""
        return self.compose(TraverseTree())

    def filter(self, fn):
        """Then only the parts for which ``fn(part)`` is true."""
        return self.compose(TraverseFilter(fn))

    def __getitem__(self, key):
        return self.compose(TraverseItem(key))

    def __getattr__(self, attr):
        if attr.startswith("_"):
            raise AttributeError(attr)
        return self.compose(TraverseAttr(attr))


class TraverseId(Traversal):
    """Selects the input itself."""

    def update(self, fn, inputs):
        return fn(inputs)

    def iterate(self, inputs):
        yield inputs


class TraverseMerge(Traversal):
    """Selects the parts selected by any of several traversals."""

    def __init__(self, *traversals):
        super().__init__()
        self._traversals = traversals

    def update(self, fn, inputs):
        for t in self._traversals:
            inputs = t.update(fn, inputs)
        return inputs

    def iterate(self, inputs):
        for t in self._traversals:
            yield from t.iterate(inputs)


class TraverseCompose(Traversal):
    """Selects with ``y`` inside each part selected by ``x``."""

    def __init__(self, x, y):
        super().__init__()
        self._x = x
        self._y = y

    def update(self, fn, inputs):
        return self._x.update(lambda part: self._y.update(fn, part), inputs)

    def iterate(self, inputs):
        for part in self._x.iterate(inputs):
            yield from self._y.iterate(part)


class TraverseFilter(Traversal):
    """Selects the input if ``fn(input)`` is true."""

    def __init__(self, fn):
        super().__init__()
        self._fn = fn

    def update(self, fn, inputs):
        return fn(inputs) if self._fn(inputs) else inputs

    def iterate(self, inputs):
        if self._fn(inputs):
            yield inputs


def _is_namedtuple_type(ty: type) -> bool:
    return issubclass(ty, tuple) and hasattr(ty, "_fields")


class TraverseAttr(Traversal):
    """Selects attribute ``attr`` (dataclasses and namedtuples are rebuilt on update)."""

    def __init__(self, attr):
        super().__init__()
        self._attr = attr

    def update(self, fn, inputs):
        value = fn(getattr(inputs, self._attr))
        if dataclasses.is_dataclass(inputs):
            return dataclasses.replace(inputs, **{self._attr: value})
        if _is_namedtuple_type(type(inputs)):
            return inputs._replace(**{self._attr: value})
        new = copy.copy(inputs)
        setattr(new, self._attr, value)
        return new

    def iterate(self, inputs):
        yield getattr(inputs, self._attr)


class TraverseItem(Traversal):
    """Selects ``inputs[key]`` (a slice selects each element in it)."""

    def __init__(self, key):
        super().__init__()
        self._key = key

    def update(self, fn, inputs):
        if isinstance(inputs, tuple):
            key = self._key if isinstance(self._key, slice) else slice(self._key, self._key + 1)
            chosen = set(range(*key.indices(len(inputs))))
            items = [fn(x) if i in chosen else x for i, x in enumerate(inputs)]
            ty = type(inputs)
            return ty(*items) if _is_namedtuple_type(ty) else ty(items)
        if isinstance(inputs, FrozenDict):
            return inputs.copy({self._key: fn(inputs[self._key])})
        new = copy.copy(inputs)
        if isinstance(self._key, slice):
            new[self._key] = [fn(x) for x in inputs[self._key]]
        else:
            new[self._key] = fn(inputs[self._key])
        return new

    def iterate(self, inputs):
        if isinstance(self._key, slice):
            yield from inputs[self._key]
        else:
            yield inputs[self._key]


class TraverseEach(Traversal):
    """Selects each element of a list or tuple."""

    def update(self, fn, inputs):
        if not isinstance(inputs, (tuple, list)):
            raise ValueError(
                f"TraverseEach selects elements of a list or tuple, got {type(inputs).__name__}."
            )
        ty = type(inputs)
        items = [fn(x) for x in inputs]
        return ty(*items) if _is_namedtuple_type(ty) else ty(items)

    def iterate(self, inputs):
        yield from inputs


class TraverseTree(Traversal):
    """Selects each leaf of a pytree."""

    def update(self, fn, inputs):
        return jax.tree.map(fn, inputs)

    def iterate(self, inputs):
        yield from jax.tree.leaves(inputs)


class ModelParamTraversal(Traversal):
    """Selects parameters of a nested params dict by ``filter_fn(path, value)``.

    ``path`` is the '/'-joined key path with a leading '/', e.g. ``'/dense/kernel'``.

    Example:
      >>> import warnings
      >>> from plait.core.traverse_util import ModelParamTraversal
      >>> with warnings.catch_warnings():
      ...   warnings.simplefilter('ignore', DeprecationWarning)
      ...   kernels = ModelParamTraversal(lambda path, _: path.endswith('kernel'))
      >>> kernels.update(lambda x: x * 0, {'d': {'kernel': 3, 'bias': 1}})
      {'d': {'kernel': 0, 'bias': 1}}
    """

    def __init__(self, filter_fn):
        super().__init__()
        self._filter_fn = filter_fn

    def _selected(self, inputs):
        for key, value in flatten_dict(inputs, keep_empty_nodes=True).items():
            if value is empty_node:
                continue
            if self._filter_fn("/" + "/".join(str(k) for k in key), value):
                yield key, value

    def iterate(self, inputs):
        for _, value in self._selected(inputs):
            yield value

    def update(self, fn, inputs):
        flat = flatten_dict(inputs, keep_empty_nodes=True)
        for key, value in list(self._selected(inputs)):
            flat[key] = fn(value)
        new = unflatten_dict(flat)
        return freeze(new) if isinstance(inputs, FrozenDict) else new
