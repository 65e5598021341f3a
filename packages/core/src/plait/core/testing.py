"""Conformance checks for code built on plait.core, usable without pytest.

Frameworks that build on (or vendor) the core call these from their own test suites; each
raises ``AssertionError`` with the key path of the first difference.

Example:
  >>> import jax.numpy as jnp
  >>> from plait.core import Object, Param, testing
  >>> class Linear(Object):
  ...   def __init__(self):
  ...     self.w = Param(jnp.ones((2, 2)))
  ...     self.alias = self.w
  >>> copy = testing.assert_split_merge_roundtrip(Linear())
  >>> copy.alias is copy.w
  True
"""

from __future__ import annotations

from typing import Any, TypeVar

import jax
import numpy as np

from . import serialization
from ._graph import find_duplicates, merge, split

# A TypeVar, not PEP 695 syntax: ci/run.py parses the core with the host Python (3.11).
A = TypeVar("A")

__all__ = [
    "assert_serialization_roundtrip",
    "assert_split_merge_roundtrip",
    "assert_trees_all_close",
    "assert_trees_all_equal",
]


def _as_numeric(x: Any) -> Any:
    arr = np.asarray(x)
    # ml_dtypes (bfloat16, float8, int4) are not understood by numpy's comparison helpers.
    if arr.dtype.kind not in "biufc":
        arr = arr.astype(np.float64)
    return arr


def _is_numeric(x: Any) -> bool:
    return isinstance(x, (int, float, complex, np.ndarray, np.generic, jax.Array))


def _compare_trees(actual: Any, expected: Any, check_leaf) -> None:
    actual_structure = jax.tree.structure(actual)
    expected_structure = jax.tree.structure(expected)
    if actual_structure != expected_structure:
        raise AssertionError(
            "The trees have different structures.\n"
            f"  actual:   {actual_structure}\n  expected: {expected_structure}"
        )
    for (path, a), b in zip(
        jax.tree_util.tree_leaves_with_path(actual), jax.tree.leaves(expected), strict=True
    ):
        where = jax.tree_util.keystr(path) or "the root"
        if _is_numeric(a) and _is_numeric(b):
            a_arr, b_arr = _as_numeric(a), _as_numeric(b)
            if a_arr.shape != b_arr.shape:
                raise AssertionError(
                    f"Leaf at {where}: shape {a_arr.shape} != expected shape {b_arr.shape}."
                )
            check_leaf(a_arr, b_arr, f"Leaf at {where} differs.")
        elif a != b:
            raise AssertionError(f"Leaf at {where}: {a!r} != expected {b!r}.")


def assert_trees_all_close(
    actual: Any, expected: Any, *, rtol: float = 1e-6, atol: float = 0.0
) -> None:
    """Same pytree structure and every numeric leaf close (other leaves equal).

    Example:
      >>> from plait.core import testing
      >>> testing.assert_trees_all_close({'a': 1.0}, {'a': 1.0 + 1e-9})
    """

    def close(a, b, msg):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=msg)

    _compare_trees(actual, expected, close)


def assert_trees_all_equal(actual: Any, expected: Any) -> None:
    """Same pytree structure and every leaf exactly equal.

    Example:
      >>> from plait.core import testing
      >>> testing.assert_trees_all_equal([1, 2], [1, 2])
    """

    def equal(a, b, msg):
        np.testing.assert_array_equal(a, b, err_msg=msg)

    _compare_trees(actual, expected, equal)


def assert_split_merge_roundtrip(node: A, *filters: Any) -> A:  # noqa: UP047
    """Checks the graph contract on ``node`` and returns ``merge(*split(node, *filters))``.

    Checked: ``split`` is deterministic (equal, equally hashed GraphDefs); ``merge`` builds
    a new object with the same GraphDef and state values; objects shared by several paths
    in ``node`` are shared by the same paths in the copy.
    """
    graphdef, *states = split(node, *filters)
    again = split(node, *filters)[0]
    if graphdef != again or hash(graphdef) != hash(again):
        raise AssertionError("split() of the same object gave two different GraphDefs.")
    copy = merge(graphdef, *states)
    if copy is node:
        raise AssertionError("merge() returned the original object instead of a new one.")
    copy_graphdef, *copy_states = split(copy, *filters)
    if copy_graphdef != graphdef:
        raise AssertionError(
            f"merge(*split(node)) has another structure.\n  node: {graphdef}\n  copy: {copy_graphdef}"
        )
    for copy_state, state in zip(copy_states, states, strict=True):
        assert_trees_all_equal(copy_state, state)
    original_shared, copy_shared = find_duplicates(node), find_duplicates(copy)
    if original_shared != copy_shared:
        raise AssertionError(
            "Shared references were not preserved by split/merge.\n"
            f"  shared in node: {original_shared}\n  shared in copy: {copy_shared}"
        )
    return copy


def assert_serialization_roundtrip(target: A) -> A:  # noqa: UP047
    """Checks ``from_bytes(target, to_bytes(target))`` equals ``target``; returns it."""
    restored = serialization.from_bytes(target, serialization.to_bytes(target))
    assert_trees_all_equal(restored, target)
    return restored
