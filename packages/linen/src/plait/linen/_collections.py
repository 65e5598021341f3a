"""Linen collection names <-> plait.core Variable types.

A Linen collection is the same thing as a plait.core Variable type under another name:
``"params"`` is ``Param``, ``"batch_stats"`` is ``BatchStat``, and an unknown name gets a
Variable type made and cached by core's registry. The scope registers each collection it
creates, so ``collection_type`` works for every collection a Linen program used, and the
bridge/checkpoint code can convert a variables dict into typed core Variables.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from plait.core import variable_type_from_name


def collection_type(col: str) -> type:
    """The plait.core Variable type of collection ``col`` (registered on first use).

    Examples:
        >>> from plait.core import Param
        >>> from plait.linen import collection_type
        >>> collection_type('params') is Param
        True
    """
    return variable_type_from_name(col, allow_register=True)


def _box_tree(tree: Any, typ: type) -> Any:
    if isinstance(tree, Mapping):
        return {k: _box_tree(v, typ) for k, v in tree.items()}
    return typ(tree)


def _unbox_tree(tree: Any) -> Any:
    if isinstance(tree, Mapping):
        return {k: _unbox_tree(v) for k, v in tree.items()}
    return tree.get_value() if hasattr(tree, "get_value") else tree


def to_typed_variables(variables: Mapping[str, Any]) -> dict[str, Any]:
    """Wraps every leaf of a Linen variables dict in its collection's core Variable type.

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.core import Param
        >>> from plait.linen import to_typed_variables
        >>> typed = to_typed_variables({'params': {'w': jnp.ones(2)}})
        >>> type(typed['params']['w']) is Param
        True
    """
    return {col: _box_tree(tree, collection_type(col)) for col, tree in variables.items()}


def from_typed_variables(typed: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`to_typed_variables`: plain values again."""
    return {col: _unbox_tree(tree) for col, tree in typed.items()}
