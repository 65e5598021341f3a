"""Flattening of nested mappings (any ``Mapping``, including ``State``).

``flatten_mapping`` / ``unflatten_mapping`` are the mapping-generic versions of
``plait.core.traverse_util.flatten_dict`` / ``unflatten_dict``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from plait.core.traverse_util import empty_node as empty_node

IsLeafCallable = Callable[[tuple[Any, ...], Mapping[Any, Any]], bool]

__all__ = [
    "IsLeafCallable",
    "empty_node",
    "flatten_mapping",
    "flatten_to_sequence",
    "unflatten_mapping",
]


def flatten_to_sequence(
    xs: Mapping[Any, Any], /, *, is_leaf: IsLeafCallable | None = None
) -> list[tuple[Any, Any]]:
    """``[(path, leaf)]`` of a nested mapping, depth first in key order.

    Example:
      >>> flatten_to_sequence({"a": {"b": 1}, "c": 2})
      [(('a', 'b'), 1), (('c',), 2)]
    """
    if not isinstance(xs, Mapping):
        raise TypeError(f"flatten_to_sequence expects a Mapping, got {type(xs).__name__}.")
    out: list[tuple[Any, Any]] = []

    def visit(node: Any, path: tuple[Any, ...]) -> None:
        if not isinstance(node, Mapping) or (is_leaf is not None and is_leaf(path, node)):
            out.append((path, node))
            return
        for key, value in node.items():
            visit(value, (*path, key))

    visit(xs, ())
    return out


def flatten_mapping(
    xs: Mapping[Any, Any],
    /,
    *,
    keep_empty_nodes: bool = False,
    is_leaf: IsLeafCallable | None = None,
    sep: str | None = None,
) -> dict[Any, Any]:
    """``{path: leaf}`` of a nested mapping; paths are tuples, or strings joined by ``sep``.

    Empty sub-mappings are dropped, or kept as ``empty_node`` with ``keep_empty_nodes``.

    Example:
      >>> flatten_mapping({"a": {"b": 1}, "c": {}}, keep_empty_nodes=True, sep="/")
      {'a/b': 1, 'c': empty_node}
    """
    if not isinstance(xs, Mapping):
        raise TypeError(f"flatten_mapping expects a Mapping, got {type(xs).__name__}.")
    flat: dict[Any, Any] = {}

    def key(path: tuple[Any, ...]) -> Any:
        return path if sep is None else sep.join(str(k) for k in path)

    def visit(node: Any, path: tuple[Any, ...]) -> None:
        if not isinstance(node, Mapping) or (is_leaf is not None and is_leaf(path, node)):
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


def unflatten_mapping(xs: Any, /, *, sep: str | None = None) -> dict[Any, Any]:
    """Inverse of :func:`flatten_mapping`; accepts a flat mapping or ``[(path, leaf)]``.

    Example:
      >>> unflatten_mapping({"a/b": 1, "c": 2}, sep="/")
      {'a': {'b': 1}, 'c': 2}
    """
    items = xs.items() if isinstance(xs, Mapping) else xs
    if not isinstance(items, Sequence) and not hasattr(items, "__iter__"):
        raise TypeError(f"unflatten_mapping expects a mapping or pairs, got {type(xs).__name__}.")
    result: dict[Any, Any] = {}
    for path, value in items:
        if sep is not None:
            path = tuple(path.split(sep))
        node = result
        for k in path[:-1]:
            node = node.setdefault(k, {})
        node[path[-1]] = {} if value is empty_node else value
    return result
