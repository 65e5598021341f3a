"""Entry paths: how a position in a pytree is named on disk and in messages.

A path is a tuple of strings, one per level (dict key, sequence index or attribute
name, each turned into a string). On disk it is the nesting of the Orbax tree; in
messages and in adapter rules it is written with ``/`` between levels (``params/dense/
kernel``), which is also what ``KeyRule`` patterns match against.
"""

from __future__ import annotations

from typing import Any

from jax.tree_util import DictKey, FlattenedIndexKey, GetAttrKey, SequenceKey

Path = tuple[str, ...]

ROOT_KEY = "__root__"
"""Orbax trees must be containers; a tree that is a single leaf is stored under this key."""


def key_entry_name(entry: Any) -> str:
    """The string name of one JAX key-path entry."""
    if isinstance(entry, DictKey):
        return str(entry.key)
    if isinstance(entry, SequenceKey):
        return str(entry.idx)
    if isinstance(entry, GetAttrKey):
        return entry.name
    if isinstance(entry, FlattenedIndexKey):
        return str(entry.key)
    return str(entry)


def path_from_keys(keys: tuple[Any, ...]) -> Path:
    """Converts a JAX key path (``tree_flatten_with_path``) into a string path."""
    return tuple(key_entry_name(entry) for entry in keys)


def show(path: Path) -> str:
    """How a path is written in messages and matched by rules: ``a/b/0``."""
    return "/".join(path) if path else "<root>"


def parse(text: str) -> Path:
    """The inverse of :func:`show`."""
    return () if text in ("", "<root>") else tuple(text.split("/"))
