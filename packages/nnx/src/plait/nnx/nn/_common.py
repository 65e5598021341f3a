"""Small helpers shared by the layer modules (private)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import jax.numpy as jnp
from plait.core import Param, VariableMetadata


def first_from(*values: Any, error_msg: str) -> Any:
    """Returns the first value that is not None; raises ``ValueError(error_msg)`` if all are."""
    for value in values:
        if value is not None:
            return value
    raise ValueError(error_msg)


def as_tuple(x: int | Iterable[int]) -> tuple[int, ...]:
    return tuple(x) if isinstance(x, Iterable) else (x,)


def canonicalize_axes(ndim: int, axes: int | Iterable[int]) -> tuple[int, ...]:
    """Sorted, deduplicated, non-negative axes."""
    return tuple(sorted({a + ndim if a < 0 else a for a in as_tuple(axes)}))


def make_param(
    init: Any,
    key: Any,
    shape: tuple[int, ...],
    dtype: Any,
    metadata: Mapping[str, Any],
    param_type: type = Param,
) -> Any:
    """``param_type(init(key, shape, dtype), **metadata)``."""
    return param_type(init(key, shape, dtype), **dict(metadata))


def init_reshaped(
    init: Any, key: Any, shape: tuple[int, ...], flat: tuple[int, ...], dtype: Any
) -> Any:
    """Runs ``init`` on the 2-D ``flat`` shape and reshapes the result to ``shape``.

    Fan-in/fan-out based initializers then see the contracted and produced sizes the
    way a plain matrix would, which is what Flax does for multi-axis kernels.
    """
    value = init(key, flat, dtype)
    if isinstance(value, VariableMetadata):
        value.raw_value = jnp.reshape(value.raw_value, shape)
        return value
    return jnp.reshape(value, shape)


def value_or_none(variable: Any) -> Any:
    return None if variable is None else variable[...]
