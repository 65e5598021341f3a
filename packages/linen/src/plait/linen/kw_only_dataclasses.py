"""Dataclass helpers with keyword-only fields (Flax's ``flax.linen.kw_only_dataclasses``).

Python >= 3.10 supports keyword-only dataclass fields natively; these are thin helpers
kept for code that imports them.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

KW_ONLY = dataclasses.KW_ONLY


def field(*, metadata: Any = None, kw_only: Any = dataclasses.MISSING, **kwargs: Any) -> Any:
    """``dataclasses.field`` (``kw_only=True`` makes the field keyword-only)."""
    return dataclasses.field(metadata=metadata, kw_only=kw_only, **kwargs)


def dataclass(
    cls: type | None = None,
    extra_fields: Sequence[tuple[str, Any, Any]] | None = None,
    **kwargs: Any,
) -> Any:
    """``dataclasses.dataclass`` that first appends ``extra_fields`` ``(name, type,
    field_or_default)`` to the class annotations.

    Examples:
        >>> from plait.linen import kw_only_dataclasses as kw
        >>> @kw.dataclass(extra_fields=[('tag', str, kw.field(default='x', kw_only=True))])
        ... class Point:
        ...   x: int
        >>> Point(1, tag='y')
        Point(x=1, tag='y')
    """
    if cls is None:
        return functools.partial(dataclass, extra_fields=extra_fields, **kwargs)
    if extra_fields:
        annotations = dict(cls.__dict__.get("__annotations__", {}))
        for name, annotation, default in extra_fields:
            annotations[name] = annotation
            setattr(cls, name, default)
        cls.__annotations__ = annotations
    return dataclasses.dataclass(cls, **kwargs)
