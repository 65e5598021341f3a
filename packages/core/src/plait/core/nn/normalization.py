"""Statistics and normalization math shared by the normalization layers of both APIs.

``compute_stats`` returns the mean and variance of ``x`` over some axes (optionally
across devices with ``lax.pmean``); ``normalize`` applies ``(x - mean) / sqrt(var + eps)``
followed by an optional per-feature scale and bias. BatchNorm, LayerNorm, RMSNorm,
GroupNorm and InstanceNorm are all these two steps with different axes.

Examples:
  >>> import jax.numpy as jnp
  >>> from plait.core.nn import normalization
  >>> x = jnp.array([[1.0, 3.0], [2.0, 6.0]])
  >>> mean, var = normalization.compute_stats(x, axes=(-1,))
  >>> mean.tolist(), var.tolist()
  ([2.0, 4.0], [1.0, 4.0])
  >>> normalization.normalize(x, mean, var, None, None, (-1,), (-1,), None, 0.0).tolist()
  [[-1.0, 1.0], [-1.0, 1.0]]
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import jax.numpy as jnp
from jax import lax

from . import dtypes as _dtypes


def canonicalize_axes(ndim: int, axes: int | Iterable[int]) -> tuple[int, ...]:
    """Sorted, deduplicated, non-negative axes.

    Examples:
      >>> canonicalize_axes(3, (-1, 0, 2))
      (0, 2)
    """
    axes = (axes,) if isinstance(axes, int) else tuple(axes)
    return tuple(sorted({a + ndim if a < 0 else a for a in axes}))


def _abs_sq(x: Any) -> Any:
    if jnp.iscomplexobj(x):
        return lax.square(lax.real(x)) + lax.square(lax.imag(x))
    return lax.square(x)


def compute_stats(
    x: Any,
    axes: int | Iterable[int],
    dtype: Any = None,
    axis_name: str | None = None,
    axis_index_groups: Any = None,
    use_mean: bool = True,
    use_fast_variance: bool = True,
    mask: Any = None,
    force_float32_reductions: bool = True,
) -> tuple[Any, Any]:
    """Mean and variance of ``x`` over ``axes``.

    Args:
      x: the input.
      axes: axes to reduce.
      dtype: minimum computation dtype (default: ``x``'s).
      axis_name: if given, average the statistics across this mapped axis (pmap /
        shard_map) with one ``lax.pmean``.
      axis_index_groups: device groups for the ``pmean``.
      use_mean: subtract the mean (False: mean is 0 and var is ``E[|x|^2]``, as RMSNorm).
      use_fast_variance: ``E[|x|^2] - |E[x]|^2`` in one pass (clipped at 0) instead of
        ``E[|x - E[x]|^2]``.
      mask: where true, elements take part in the statistics.
      force_float32_reductions: compute in at least float32 (half-precision inputs are
        promoted); double and complex inputs keep their precision.

    Returns:
      ``(mean, var)`` with the reduced axes removed.
    """
    if dtype is None:
        dtype = jnp.result_type(x)
    if force_float32_reductions:
        dtype = jnp.promote_types(dtype, jnp.float32)
    x = jnp.asarray(x, dtype)
    axes = canonicalize_axes(x.ndim, axes)

    def mean(*arrays: Any) -> tuple[Any, ...]:
        means = tuple(a.mean(axes, where=mask) for a in arrays)
        if axis_name is None:
            return means
        # One collective for all statistics: stack, pmean, unstack.
        stacked = lax.pmean(jnp.stack(means), axis_name, axis_index_groups=axis_index_groups)
        return tuple(stacked[i] for i in range(len(arrays)))

    if not use_mean:
        (var,) = mean(_abs_sq(x))
        return jnp.zeros_like(var), var
    if use_fast_variance:
        mu, mu2 = mean(x, _abs_sq(x))
        # Round-off can make E[x^2] - E[x]^2 slightly negative.
        return mu, jnp.maximum(0.0, mu2 - _abs_sq(mu))
    (mu,) = mean(x)
    (var,) = mean(_abs_sq(x - jnp.expand_dims(mu, axes)))
    return mu, var


def normalize(
    x: Any,
    mean: Any,
    var: Any,
    scale: Any,
    bias: Any,
    reduction_axes: int | Iterable[int],
    feature_axes: int | Iterable[int],
    dtype: Any,
    epsilon: float,
) -> Any:
    """``(x - mean) * rsqrt(var + epsilon) * scale + bias``.

    ``mean`` / ``var`` have ``x``'s shape without ``reduction_axes``; ``scale`` / ``bias``
    (either may be None) have the sizes of ``feature_axes``. The result's dtype is
    ``dtype``, or promoted from ``x``, ``scale`` and ``bias`` when None.
    """
    reduction_axes = canonicalize_axes(x.ndim, reduction_axes)
    feature_axes = canonicalize_axes(x.ndim, feature_axes)
    stats_shape = [1 if ax in reduction_axes else n for ax, n in enumerate(x.shape)]
    feature_shape = [n if ax in feature_axes else 1 for ax, n in enumerate(x.shape)]
    mean = jnp.reshape(mean, stats_shape)
    var = jnp.reshape(var, stats_shape)
    y = x - mean
    mul = lax.rsqrt(var + epsilon)
    present = [x]
    if scale is not None:
        scale = jnp.reshape(scale, feature_shape)
        mul = mul * scale
        present.append(scale)
    y = y * mul
    if bias is not None:
        bias = jnp.reshape(bias, feature_shape)
        y = y + bias
        present.append(bias)
    return jnp.asarray(y, _dtypes.canonicalize_dtype(*present, dtype=dtype))


__all__ = ["canonicalize_axes", "compute_stats", "normalize"]
