"""Pooling over the spatial axes of ``(batch..., spatial..., features)`` arrays.

The layout is channels-last, as in Flax: ``window_shape`` covers the spatial axes
that sit between the batch axes and the final feature axis. An input with no batch
axis (rank ``len(window_shape) + 1``) is accepted and returned without one.

Examples:
  >>> import jax.numpy as jnp
  >>> from plait.core.nn import pooling
  >>> x = jnp.arange(16.0).reshape(1, 4, 4, 1)
  >>> pooling.max_pool(x, (2, 2), strides=(2, 2))[0, :, :, 0].tolist()
  [[5.0, 7.0], [13.0, 15.0]]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
from jax import lax

from ._errors import NNShapeError

_RANK_TOO_SMALL = (
    "pooling with window_shape={window_shape} needs inputs of rank at least {need} "
    "(spatial axes {window_shape} plus a trailing feature axis), but got inputs of shape "
    "{shape}. Pooling is channels-last: add a feature axis, e.g. x[..., None]."
)
_STRIDES_MISMATCH = (
    "strides {strides} has {got} entries but window_shape {window_shape} has {want}; "
    "give one stride per pooled (spatial) axis."
)
_PADDING_MISMATCH = (
    "padding {padding} has {got} (low, high) pairs but window_shape {window_shape} has "
    "{want} axes; give one pair per pooled axis, or the string 'SAME' or 'VALID'."
)


def pool(
    inputs: Any,
    init: Any,
    reduce_fn: Callable[[Any, Any], Any],
    window_shape: Sequence[int],
    strides: Sequence[int] | None,
    padding: str | Sequence[tuple[int, int]],
) -> Any:
    """Reduces each window of the spatial axes with ``reduce_fn``.

    Args:
      inputs: array of shape ``(batch..., spatial..., features)``; the batch axes may
        be absent.
      init: the reduction's identity (0 for a sum, -inf for a max).
      reduce_fn: binary reduction, e.g. ``jax.lax.add`` or ``jax.lax.max``.
      window_shape: window size per spatial axis.
      strides: step per spatial axis (default: 1 everywhere).
      padding: 'SAME', 'VALID', or one ``(low, high)`` pair per spatial axis.

    Returns:
      The pooled array, with the batch axes (or their absence) preserved.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jax import lax
      >>> pool(jnp.ones((3, 1)), 0.0, lax.add, (2,), None, 'VALID')[:, 0].tolist()
      [2.0, 2.0]
    """
    window_shape = tuple(window_shape)
    n_spatial = len(window_shape)
    strides = (1,) * n_spatial if strides is None else tuple(strides)
    if len(strides) != n_spatial:
        raise NNShapeError(
            _STRIDES_MISMATCH.format(
                strides=strides, got=len(strides), window_shape=window_shape, want=n_spatial
            )
        )
    if inputs.ndim < n_spatial + 1:
        raise NNShapeError(
            _RANK_TOO_SMALL.format(
                window_shape=window_shape, need=n_spatial + 1, shape=inputs.shape
            )
        )
    unbatched = inputs.ndim == n_spatial + 1
    if unbatched:
        inputs = inputs[None]
    n_batch = inputs.ndim - n_spatial - 1
    dims = (1,) * n_batch + window_shape + (1,)
    all_strides = (1,) * n_batch + strides + (1,)
    if not isinstance(padding, str):
        pairs = tuple((int(lo), int(hi)) for lo, hi in padding)
        if len(pairs) != n_spatial:
            raise NNShapeError(
                _PADDING_MISMATCH.format(
                    padding=padding, got=len(pairs), window_shape=window_shape, want=n_spatial
                )
            )
        padding = ((0, 0),) * n_batch + pairs + ((0, 0),)
    out = lax.reduce_window(inputs, init, reduce_fn, dims, all_strides, padding)
    return out[0] if unbatched else out


def avg_pool(
    inputs: Any,
    window_shape: Sequence[int],
    strides: Sequence[int] | None = None,
    padding: str | Sequence[tuple[int, int]] = "VALID",
    count_include_pad: bool = True,
) -> Any:
    """Averages each window.

    Args:
      inputs: array of shape ``(batch..., spatial..., features)``.
      window_shape: window size per spatial axis.
      strides: step per spatial axis (default 1).
      padding: 'SAME', 'VALID' or ``(low, high)`` pairs.
      count_include_pad: divide by the full window size (True) or only by the number
        of non-padding elements in each window (False).

    Examples:
      >>> import jax.numpy as jnp
      >>> avg_pool(jnp.array([[1.0], [3.0]]), (2,)).tolist()
      [[2.0]]
    """
    summed = pool(inputs, 0.0, lax.add, window_shape, strides, padding)
    if count_include_pad:
        return summed / np.prod(window_shape)
    # Count the real (unpadded) elements of each window by pooling a ones array of the
    # same spatial extent; a single feature column broadcasts over the features.
    ones = jnp.ones(inputs.shape[:-1] + (1,), dtype=summed.dtype)
    counts = pool(ones, 0.0, lax.add, window_shape, strides, padding)
    return summed / counts


def max_pool(
    inputs: Any,
    window_shape: Sequence[int],
    strides: Sequence[int] | None = None,
    padding: str | Sequence[tuple[int, int]] = "VALID",
) -> Any:
    """Takes the maximum of each window (padding never wins).

    Examples:
      >>> import jax.numpy as jnp
      >>> max_pool(jnp.array([[1.0], [3.0], [2.0]]), (2,)).tolist()
      [[3.0], [3.0]]
    """
    return pool(inputs, -jnp.inf, lax.max, window_shape, strides, padding)


def min_pool(
    inputs: Any,
    window_shape: Sequence[int],
    strides: Sequence[int] | None = None,
    padding: str | Sequence[tuple[int, int]] = "VALID",
) -> Any:
    """Takes the minimum of each window (padding never wins).

    Examples:
      >>> import jax.numpy as jnp
      >>> min_pool(jnp.array([[1.0], [3.0], [2.0]]), (2,)).tolist()
      [[1.0], [2.0]]
    """
    return pool(inputs, jnp.inf, lax.min, window_shape, strides, padding)


__all__ = ["avg_pool", "max_pool", "min_pool", "pool"]
