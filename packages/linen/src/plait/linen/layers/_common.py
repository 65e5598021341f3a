"""Helpers shared by the layer modules: error locations, checked params, axes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from ._errors import INPUT_RANK, PARAM_SHAPE_MISMATCH, LayerShapeError


def describe(module: Any) -> str:
    """Names a module for an error message: its class and its path in the tree."""
    try:
        path = tuple(module.path)
    except Exception:  # unbound module or no scope yet: the class alone is all we know
        path = None
    kind = type(module).__name__
    if path is None:
        return kind
    return f"{kind} at path '/{'/'.join(str(p) for p in path)}'"


def stored_shape(value: Any) -> tuple[int, ...]:
    """Shape of a stored variable value (looking inside metadata boxes)."""
    # Boxed values (partitioning metadata) expose the array as `.value`.
    if hasattr(value, "unbox") and hasattr(value, "value"):
        value = value.value
    return tuple(jnp.shape(value))


def checked_param(
    module: Any,
    name: str,
    init_fn: Any,
    shape: Sequence[int],
    dtype: Any,
    *,
    argument: str,
    input_shape: Sequence[int],
    hint: str = "",
    collection: str = "params",
) -> Any:
    """``module.param(name, init_fn, shape, dtype)``, with a readable error when the
    stored parameter was created for inputs of another shape."""
    shape = tuple(int(s) for s in shape)
    if module.has_variable(collection, name):
        stored = stored_shape(module.get_variable(collection, name))
        if stored != shape:
            raise LayerShapeError(
                PARAM_SHAPE_MISMATCH.format(
                    where=describe(module),
                    argument=argument,
                    actual_input=tuple(input_shape),
                    collection=collection,
                    name=name,
                    needed=shape,
                    stored=stored,
                    hint=hint + " " if hint else "",
                )
            )
    return module.param(name, init_fn, shape, dtype)


def require_rank(module: Any, x: Any, minimum: int, *, argument: str, need: str, fix: str) -> None:
    """Raises LayerShapeError when ``x.ndim < minimum``."""
    if jnp.ndim(x) < minimum:
        raise LayerShapeError(
            INPUT_RANK.format(
                where=describe(module),
                argument=argument,
                actual=tuple(jnp.shape(x)),
                rank=jnp.ndim(x),
                need=need,
                fix=fix,
            )
        )


def canonicalize_axes(rank: int, axes: int | Iterable[int]) -> tuple[int, ...]:
    """Sorted, de-duplicated, non-negative axes."""
    if not isinstance(axes, Iterable):
        axes = (axes,)
    return tuple(sorted({int(a) + rank if int(a) < 0 else int(a) for a in axes}))


def as_tuple(x: int | Iterable[int]) -> tuple[int, ...]:
    """``x`` as a tuple (an int becomes a 1-tuple)."""
    if isinstance(x, Iterable):
        return tuple(x)
    return (x,)


def prod(shape: Iterable[int]) -> int:
    """Product of a shape as a Python int (1 for an empty shape)."""
    return int(np.prod(tuple(shape), dtype=np.int64))
