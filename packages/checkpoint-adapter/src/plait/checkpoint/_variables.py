"""The bridge to plait.core's Variable and State types.

A checkpoint stores a Variable as its value (the array) at the Variable's path, with
its type recorded in the JSON description: the registered collection name (``params``
for ``Param``...), the class name, and the JSON-representable metadata. Restoring
without a target rebuilds the types from core's collection registry; restoring into
a target keeps the target's own Variables (type and metadata) and only swaps values.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

from plait.core import (
    State,
    Variable,
    VariableError,
    variable_name_from_type,
    variable_type_from_name,
)

__all__ = [
    "collection_of",
    "is_state",
    "is_variable",
    "make_state",
    "rebuild_variable",
    "register_collection",
    "variable_record",
    "variable_type",
    "variable_value",
    "with_value",
]


def collection_name_of(typ: type) -> str | None:
    """The registered collection name of ``typ`` or of its nearest registered base class."""
    for klass in typ.__mro__:
        if isinstance(klass, type) and issubclass(klass, Variable):
            try:
                return variable_name_from_type(klass)
            except VariableError:
                continue
    return None


def variable_type(collection: str) -> type:
    """The Variable type of a collection name (made and registered if new, as Linen does)."""
    return variable_type_from_name(collection, allow_register=True)


def register_collection(typ: type) -> str:
    """The collection name of an unregistered Variable type (its class name, registered)."""
    return variable_name_from_type(typ, allow_register=True)


def is_variable(x: Any) -> bool:
    return isinstance(x, Variable)


def is_state(x: Any) -> bool:
    return isinstance(x, State)


def make_state(mapping: dict[str, Any]) -> Any:
    """A core State from a nested dict."""
    return State(mapping)


def collection_of(var: Any) -> str | None:
    """The collection name of a Variable's type (or of its nearest registered base)."""
    return collection_name_of(type(var))


def variable_value(var: Any) -> Any:
    return var.get_raw_value()


def with_value(var: Any, value: Any) -> Any:
    """A copy of ``var`` (same type and metadata) holding ``value``."""
    return var.replace(value)


def _json_metadata(metadata: Mapping[str, Any]) -> list[list[Any]]:
    """The metadata entries that survive JSON exactly (hooks, callables and arrays do not)."""
    kept = []
    for name, value in metadata.items():
        if name.startswith("on_"):
            continue
        kind = "tuple" if isinstance(value, tuple) else "json"
        encoded = list(value) if kind == "tuple" else value
        try:
            if json.loads(json.dumps(encoded, allow_nan=False)) != encoded:
                continue
        except (TypeError, ValueError):
            continue
        kept.append([name, kind, encoded])
    return kept


def variable_record(var: Any) -> dict[str, Any]:
    """The JSON description of a Variable's type and metadata."""
    typ = type(var)
    exact = collection_name_of(typ)
    registered_exactly = exact is not None and variable_type_from_name(exact) is typ
    return {
        "type": typ.__name__,
        "collection": exact if registered_exactly else None,
        "base_collection": exact,
        "metadata": _json_metadata(var.get_metadata()),
    }


@functools.cache
def _unregistered_type(name: str, base: type) -> type:
    # A stand-in class for a Variable type that has no collection name in this process.
    # It is not added to core's registry (that would claim the name for a class the
    # user never defined); cached so that repeated restores agree on the type.
    return type(name, (base,), {"__module__": __name__, "__qualname__": name})


def _type_from_record(record: Mapping[str, Any]) -> type:
    if record.get("collection"):
        return variable_type_from_name(record["collection"], allow_register=True)
    base = Variable
    if record.get("base_collection"):
        base = variable_type_from_name(record["base_collection"], allow_register=True)
    name = str(record["type"])
    return _unregistered_type(name if name.isidentifier() else "RestoredVariable", base)


def rebuild_variable(record: Mapping[str, Any], value: Any) -> Any:
    """A Variable of the recorded type and metadata holding ``value``."""
    metadata = {
        name: tuple(encoded) if kind == "tuple" else encoded
        for name, kind, encoded in record.get("metadata", ())
    }
    return _type_from_record(record).from_metadata(value, metadata)
