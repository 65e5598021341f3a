"""Representations (``nnx.reprlib``): the nested text repr used by Modules and ``display``."""

from __future__ import annotations

from typing import Any

from ._repr import format_object as _format_object


def get_repr(obj: Any) -> str:
    """The nested repr of a Module / Object (Variables as ``Param(float32[2,3])``)."""
    return _format_object(obj)
