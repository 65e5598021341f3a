"""Adapter rules: rename, transpose, reshape, cast, split or drop checkpoint entries on restore.

A rule matches checkpoint entry paths written with ``/`` between levels
(``params/Dense_0/kernel``) by regular expression (``re.search``). Rules apply in
order; each rule sees the path as renamed by the rules before it, and the value
transforms compose. A ``split`` rule turns one entry into several (a fused
query/key/value kernel into separate ones); the rules after it apply to each part. Transforms must be traceable by JAX (they are shape-checked with
``jax.eval_shape`` before anything is read) and run on the host copy of the array.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax.numpy as jnp

__all__ = ["KeyRule", "cast", "drop", "rename", "reshape", "split", "transpose"]


@dataclasses.dataclass(frozen=True)
class KeyRule:
    """One adapter rule for checkpoint entries whose path matches ``pattern``.

    Attributes:
      pattern: regular expression searched in the entry's ``/``-joined path.
      replacement: if set, the path becomes ``re.sub(pattern, replacement, path)``
        (group references such as ``\\1`` work).
      transform: if set, a function applied to the entry's array (host NumPy array;
        must also accept a JAX tracer, for shape checking).
      drop: if True, the entry is ignored (neither restored nor reported unexpected).
      parts: if set, the entry becomes one entry per ``(replacement, transform)``
        pair: path ``re.sub(pattern, replacement, path)``, value ``transform(array)``.
      description: shown in error messages.

    Example:
      >>> from plait.checkpoint import KeyRule
      >>> rule = KeyRule(r"^Dense_(\\d+)/", replacement=r"layers/\\1/")
      >>> rule.rename_path("Dense_0/kernel")
      'layers/0/kernel'
    """

    pattern: str
    replacement: str | None = None
    transform: Callable[[Any], Any] | None = None
    drop: bool = False
    parts: tuple[tuple[str, Callable[[Any], Any]], ...] = ()
    description: str = ""

    def __post_init__(self):
        re.compile(self.pattern)
        if self.parts and (self.replacement is not None or self.transform is not None):
            raise ValueError(
                f"KeyRule({self.pattern!r}): parts= gives each part its own path and transform; "
                "replacement= and transform= cannot be combined with it."
            )

    def matches(self, path: str) -> bool:
        return re.search(self.pattern, path) is not None

    def rename_path(self, path: str) -> str:
        if self.replacement is None:
            return path
        return re.sub(self.pattern, self.replacement, path)

    def rename_part(self, path: str, index: int) -> str:
        """The path of part ``index`` of a ``split`` rule."""
        return re.sub(self.pattern, self.parts[index][0], path)

    def __str__(self) -> str:
        return self.description or f"KeyRule({self.pattern!r})"


def rename(pattern: str, replacement: str) -> KeyRule:
    """Renames matching entries: ``rename(r"^Dense_0/", "linear/")``.

    Example:
      >>> rename(r"^Dense_0/", "linear/").rename_path("Dense_0/bias")
      'linear/bias'
    """
    return KeyRule(
        pattern, replacement=replacement, description=f"rename({pattern!r} -> {replacement!r})"
    )


def transpose(pattern: str, axes: Sequence[int] | None = None) -> KeyRule:
    """Transposes matching arrays (reverses the axes when ``axes`` is None).

    Example:
      >>> import numpy as np
      >>> transpose("kernel").transform(np.zeros((2, 3))).shape
      (3, 2)
    """
    axes_t = None if axes is None else tuple(axes)
    return KeyRule(
        pattern,
        transform=lambda x: x.transpose(axes_t),
        description=f"transpose({pattern!r}, {axes_t})",
    )


def reshape(pattern: str, shape: Sequence[int]) -> KeyRule:
    """Reshapes matching arrays to ``shape`` (one ``-1`` allowed).

    Example:
      >>> import numpy as np
      >>> reshape("w", (6,)).transform(np.zeros((2, 3))).shape
      (6,)
    """
    shape_t = tuple(int(d) for d in shape)
    return KeyRule(
        pattern,
        transform=lambda x: x.reshape(shape_t),
        description=f"reshape({pattern!r}, {shape_t})",
    )


def cast(pattern: str, dtype: Any) -> KeyRule:
    """Casts matching arrays to ``dtype``.

    Example:
      >>> import numpy as np
      >>> cast(".", np.float16).transform(np.zeros(2)).dtype
      dtype('float16')
    """
    dtype_t = jnp.dtype(dtype)
    return KeyRule(
        pattern,
        transform=lambda x: x.astype(dtype_t),
        description=f"cast({pattern!r}, {dtype_t.name})",
    )


def split(pattern: str, parts: Mapping[str, Callable[[Any], Any]]) -> KeyRule:
    """Splits each matching entry into several: ``{replacement: transform}`` per part.

    Each part's path is ``re.sub(pattern, replacement, path)`` and its value
    ``transform(array)``. Typical use: a fused ``qkv`` kernel stored as one array of
    shape ``(3, heads, d, head_dim)`` into the separate projections a model holds.
    The entry is read once; every part is cut from that host copy.

    Example:
      >>> import numpy as np
      >>> rule = split(r"qkv/w$", {"q/w": lambda w: w[0], "kv/w": lambda w: w[1:]})
      >>> rule.rename_part("attn/qkv/w", 0), rule.rename_part("attn/qkv/w", 1)
      ('attn/q/w', 'attn/kv/w')
    """
    if not parts:
        raise ValueError(f"split({pattern!r}, ...) needs at least one part.")
    pairs = tuple((str(replacement), fn) for replacement, fn in parts.items())
    names = ", ".join(replacement for replacement, _ in pairs)
    return KeyRule(pattern, parts=pairs, description=f"split({pattern!r} -> {names})")


def drop(pattern: str) -> KeyRule:
    """Ignores matching checkpoint entries (e.g. an optimizer state you do not restore).

    Example:
      >>> drop("^opt_state/").drop
      True
    """
    return KeyRule(pattern, drop=True, description=f"drop({pattern!r})")
