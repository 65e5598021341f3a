"""Readable nested ``repr`` of Modules: sub-modules indented, Variables as type + shape.

    Model(  # Param: 26 (104 B)
      layers=List(  # Param: 26 (104 B)
        [0]=Linear(  # Param: 9 (36 B)
          kernel=Param(float32[2,3]),
          ...

Arrays print as ``dtype[shape]`` (their values are not printed), a node reached a second
time prints as ``<shared Linear>`` so cycles terminate, and the first line of every
Module counts its subtree's Variables by type.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from plait.core import Object, Variable, iter_graph

INDENT = "  "


def _array_text(x: Any) -> str:
    shape = ",".join(str(d) for d in x.shape)
    return f"{x.dtype}[{shape}]"


def _is_array(x: Any) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x, type)


def _fmt_bytes(n: int) -> str:
    if n < 1000:
        return f"{n} B"
    for unit in ("KB", "MB", "GB"):
        n /= 1000  # type: ignore[assignment]
        if n < 1000 or unit == "GB":
            return f"{n:.1f} {unit}"
    return f"{n} B"


def variable_counts(node: Any) -> str:
    """``'Param: 26 (104 B), BatchStat: 8 (32 B)'`` for the Variables under ``node``."""
    totals: dict[str, list[int]] = {}
    try:
        items = list(iter_graph(node))
    except Exception:  # repr must work on half-built objects too
        return ""
    for _, leaf in items:
        if isinstance(leaf, Variable):
            value = leaf.get_raw_value()
            for array in jax.tree.leaves(value):
                if not _is_array(array):
                    continue
                size = int(np.prod(array.shape, dtype=np.int64))
                entry = totals.setdefault(type(leaf).__name__, [0, 0])
                entry[0] += size
                entry[1] += size * _itemsize(array.dtype)
    return ", ".join(f"{name}: {size:,} ({_fmt_bytes(nbytes)})" for name, (size, nbytes) in totals.items())


def _itemsize(dtype: Any) -> int:
    size = getattr(dtype, "itemsize", None)  # also set on PRNG key dtypes (key<fry>)
    return int(size) if size is not None else int(np.dtype(dtype).itemsize)


def public_attributes(obj: Any) -> list[tuple[str, Any]]:
    # Integer keys are the items of an nnx.List.
    return [(k, v) for k, v in vars(obj).items() if not (isinstance(k, str) and k.startswith("_"))]


def format_value(value: Any, depth: int, seen: set[int]) -> str:
    pad = INDENT * depth
    if isinstance(value, Variable):
        inner = value.get_raw_value()
        body = _array_text(inner) if _is_array(inner) else format_value(inner, depth, seen)
        return f"{type(value).__name__}({body})"
    if isinstance(value, Object):
        if id(value) in seen:
            return f"<shared {type(value).__name__}>"
        seen.add(id(value))
        return format_object(value, depth, seen)
    if _is_array(value):
        return _array_text(value)
    if isinstance(value, list | tuple) and any(_is_structural(v) for v in value):
        open_, close = ("[", "]") if isinstance(value, list) else ("(", ")")
        inner = [f"{pad}{INDENT}{format_value(v, depth + 1, seen)}," for v in value]
        return "\n".join([open_, *inner, f"{pad}{close}"])
    if isinstance(value, Mapping) and any(_is_structural(v) for v in value.values()):
        inner = [
            f"{pad}{INDENT}{k!r}: {format_value(v, depth + 1, seen)},"
            for k, v in value.items()
        ]
        return "\n".join(["{", *inner, f"{pad}}}"])
    if callable(value) and hasattr(value, "__name__") and not isinstance(value, type):
        return getattr(value, "__qualname__", value.__name__)
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_structural(value: Any) -> bool:
    return isinstance(value, Variable | Object) or _is_array(value)


def format_object(obj: Any, depth: int = 0, seen: set[int] | None = None) -> str:
    seen = {id(obj)} if seen is None else seen
    pad = INDENT * depth
    counts = variable_counts(obj) if depth == 0 or _has_variables(obj) else ""
    head = f"{type(obj).__name__}(" + (f"  # {counts}" if counts else "")
    attributes = public_attributes(obj)
    if not attributes:
        return f"{type(obj).__name__}()"
    lines = [head]
    for name, value in attributes:
        label = f"[{name}]" if isinstance(name, int) else name
        lines.append(f"{pad}{INDENT}{label}={format_value(value, depth + 1, seen)},")
    lines.append(f"{pad})")
    return "\n".join(lines)


def _has_variables(obj: Any) -> bool:
    return any(isinstance(v, Variable | Object) for _, v in public_attributes(obj))
