"""Normalization layers: BatchNorm, LayerNorm, RMSNorm, GroupNorm, InstanceNorm.

All of them compute a mean and variance over some axes (in at least float32 when
``force_float32_reductions``), normalize, then apply a learned per-feature scale
and bias. They differ only in which axes are reduced and which carry features.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
from plait.core.nn import initializers, normalization

from ._base import Module, compact, merge_param
from ._common import canonicalize_axes, describe, stored_shape
from ._errors import LayerConfigError, LayerShapeError

Array = Any
Dtype = Any
Axes = int | Sequence[int]


def _compute_stats(
    x: Array,
    axes: Axes,
    dtype: Dtype | None,
    axis_name: str | None = None,
    axis_index_groups: Any = None,
    use_mean: bool = True,
    use_fast_variance: bool = True,
    mask: Array | None = None,
    force_float32_reductions: bool = True,
) -> tuple[Array, Array]:
    """Mean and variance of ``x`` over ``axes`` (``plait.core.nn.normalization``).

    The axes go through Linen's own canonicalization first, which also accepts
    NumPy integer scalars (the core one takes only Python ints or iterables).
    """
    return normalization.compute_stats(
        x,
        canonicalize_axes(jnp.ndim(x), axes),
        dtype,
        axis_name,
        axis_index_groups,
        use_mean=use_mean,
        use_fast_variance=use_fast_variance,
        mask=mask,
        force_float32_reductions=force_float32_reductions,
    )


def _feature_param(
    module: Module,
    name: str,
    init: Any,
    shape: tuple[int, ...],
    param_dtype: Dtype,
    x: Array,
    feature_axes: tuple[int, ...],
) -> Array:
    """A scale/bias parameter over ``feature_axes``, checked against the stored one."""
    if module.has_variable("params", name):
        stored = stored_shape(module.get_variable("params", name))
        if stored != shape:
            raise LayerShapeError(
                f"{describe(module)}: the inputs have shape {tuple(x.shape)}, whose "
                f"feature axes {feature_axes} have sizes {shape}, but the variables "
                f"hold '{name}' of shape {stored}. Pass inputs with feature sizes "
                f"{stored}, or re-run `init` with the new input shape."
            )
    return module.param(name, init, shape, param_dtype)


def _normalize(
    module: Module,
    x: Array,
    mean: Array,
    var: Array,
    reduction_axes: Axes,
    feature_axes: Axes,
    dtype: Dtype | None,
    param_dtype: Dtype,
    epsilon: float,
    use_bias: bool,
    use_scale: bool,
    bias_init: Any,
    scale_init: Any,
    force_float32_reductions: bool = True,
) -> Array:
    """``(x - mean) * rsqrt(var + eps) * scale + bias``, cast to the output dtype.

    ``scale`` and ``bias`` are parameters of ``module`` with one entry per position
    of the feature axes.
    """
    reduction_axes = canonicalize_axes(x.ndim, reduction_axes)
    feature_axes = canonicalize_axes(x.ndim, feature_axes)
    param_shape = tuple(x.shape[ax] for ax in feature_axes)
    scale = bias = None
    if use_scale:
        scale = _feature_param(
            module, "scale", scale_init, param_shape, param_dtype, x, feature_axes
        )
        if not force_float32_reductions:
            scale = jnp.asarray(scale, param_dtype)
    if use_bias:
        bias = _feature_param(module, "bias", bias_init, param_shape, param_dtype, x, feature_axes)
        if not force_float32_reductions:
            bias = jnp.asarray(bias, param_dtype)
    return normalization.normalize(
        x, mean, var, scale, bias, reduction_axes, feature_axes, dtype, epsilon
    )


class BatchNorm(Module):
    """Batch normalization, with running statistics in the ``batch_stats`` collection.

    In training (``use_running_average=False``) the batch mean and variance are used
    and the running averages ``batch_stats/mean`` and ``batch_stats/var`` are updated
    (``running = momentum * running + (1 - momentum) * batch``); mark ``batch_stats``
    mutable in ``apply``. In evaluation (``use_running_average=True``) the running
    averages are used. During ``init`` the running averages are not updated.

    Attributes:
      use_running_average: use the stored statistics instead of the batch's; may
        also be passed to ``__call__`` (exactly one of the two must set it).
      axis: the feature axis.
      momentum: decay of the running averages.
      epsilon: added to the variance.
      dtype: the dtype of the result (default: inferred).
      param_dtype: the dtype of scale and bias.
      use_bias: learn a bias (beta).
      use_scale: learn a scale (gamma).
      bias_init: initializer for the bias.
      scale_init: initializer for the scale.
      axis_name: a named axis (``vmap``/``pmap``/``shard_map``) across which the
        batch statistics are averaged.
      axis_index_groups: subgroups of ``axis_name`` to average within.
      use_fast_variance: compute the variance as ``E[x^2] - E[x]^2``.
      force_float32_reductions: compute statistics (and store running averages) in
        at least float32.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from plait import linen as nn
      >>> bn = nn.BatchNorm(use_running_average=False)
      >>> x = jnp.arange(6.0).reshape(3, 2)
      >>> variables = bn.init(jax.random.key(0), x)
      >>> y, updates = bn.apply(variables, x, mutable=['batch_stats'])
      >>> [round(float(m), 3) for m in updates['batch_stats']['mean']]
      [0.02, 0.03]
    """

    use_running_average: bool | None = None
    axis: int = -1
    momentum: float = 0.99
    epsilon: float = 1e-5
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    use_bias: bool = True
    use_scale: bool = True
    bias_init: Any = initializers.zeros
    scale_init: Any = initializers.ones
    axis_name: str | None = None
    axis_index_groups: Any = None
    use_fast_variance: bool = True
    force_float32_reductions: bool = True

    @compact
    def __call__(
        self, x: Array, use_running_average: bool | None = None, *, mask: Array | None = None
    ) -> Array:
        """Normalizes ``x`` with batch (training) or running (evaluation) statistics.

        Args:
          x: the inputs.
          use_running_average: overrides the attribute when the attribute is None.
          mask: boolean array broadcastable to ``x``: which entries enter the
            statistics.
        """
        use_running_average = merge_param(
            "use_running_average", self.use_running_average, use_running_average
        )
        feature_axes = canonicalize_axes(x.ndim, self.axis)
        reduction_axes = tuple(i for i in range(x.ndim) if i not in feature_axes)
        feature_shape = tuple(x.shape[ax] for ax in feature_axes)
        stats_dtype = jnp.float32 if self.force_float32_reductions else self.param_dtype

        for name in ("mean", "var"):
            if self.has_variable("batch_stats", name):
                stored = stored_shape(self.get_variable("batch_stats", name))
                if stored != feature_shape:
                    raise LayerShapeError(
                        f"{describe(self)}: the inputs have shape {tuple(x.shape)} with "
                        f"features {feature_shape} on axis {self.axis}, but "
                        f"batch_stats/{name} has shape {stored}. Pass inputs with "
                        f"{stored} features on axis {self.axis} (or set `axis` to the "
                        "feature axis), or re-run `init` with the new input shape."
                    )
        ra_mean = self.variable(
            "batch_stats", "mean", lambda s: jnp.zeros(s, stats_dtype), feature_shape
        )
        ra_var = self.variable(
            "batch_stats", "var", lambda s: jnp.ones(s, stats_dtype), feature_shape
        )

        if use_running_average:
            mean, var = ra_mean.value, ra_var.value
            if not self.force_float32_reductions:
                mean = jnp.asarray(mean, self.param_dtype)
                var = jnp.asarray(var, self.param_dtype)
        else:
            initializing = self.is_initializing()
            mean, var = _compute_stats(
                x,
                reduction_axes,
                dtype=self.dtype,
                # The named axis need not exist during init (it may run unmapped).
                axis_name=None if initializing else self.axis_name,
                axis_index_groups=self.axis_index_groups,
                use_fast_variance=self.use_fast_variance,
                mask=mask,
                force_float32_reductions=self.force_float32_reductions,
            )
            if not initializing:
                ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
                ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var

        return _normalize(
            self,
            x,
            mean,
            var,
            reduction_axes,
            feature_axes,
            self.dtype,
            self.param_dtype,
            self.epsilon,
            self.use_bias,
            self.use_scale,
            self.bias_init,
            self.scale_init,
            self.force_float32_reductions,
        )


class LayerNorm(Module):
    """Layer normalization: statistics over ``reduction_axes`` of each example.

    Attributes:
      epsilon: added to the variance.
      dtype: the dtype of the result (default: inferred).
      param_dtype: the dtype of scale and bias.
      use_bias: learn a bias.
      use_scale: learn a scale.
      bias_init: initializer for the bias.
      scale_init: initializer for the scale.
      reduction_axes: axes to compute the statistics over.
      feature_axes: axes with one learned scale/bias entry per position.
      axis_name: named axis to average the statistics over.
      axis_index_groups: subgroups of ``axis_name``.
      use_fast_variance: compute the variance as ``E[x^2] - E[x]^2``.
      force_float32_reductions: compute statistics in at least float32.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from plait import linen as nn
      >>> x = jnp.array([[1.0, 2.0, 3.0]])
      >>> ln = nn.LayerNorm()
      >>> y = ln.apply(ln.init(jax.random.key(0), x), x)
      >>> [round(float(v), 3) for v in y[0]]
      [-1.225, 0.0, 1.225]
    """

    epsilon: float = 1e-6
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    use_bias: bool = True
    use_scale: bool = True
    bias_init: Any = initializers.zeros
    scale_init: Any = initializers.ones
    reduction_axes: Axes = -1
    feature_axes: Axes = -1
    axis_name: str | None = None
    axis_index_groups: Any = None
    use_fast_variance: bool = True
    force_float32_reductions: bool = True

    @compact
    def __call__(self, x: Array, *, mask: Array | None = None) -> Array:
        """Normalizes ``x``; ``mask`` selects the entries entering the statistics."""
        mean, var = _compute_stats(
            x,
            self.reduction_axes,
            self.dtype,
            self.axis_name,
            self.axis_index_groups,
            use_fast_variance=self.use_fast_variance,
            mask=mask,
            force_float32_reductions=self.force_float32_reductions,
        )
        return _normalize(
            self,
            x,
            mean,
            var,
            self.reduction_axes,
            self.feature_axes,
            self.dtype,
            self.param_dtype,
            self.epsilon,
            self.use_bias,
            self.use_scale,
            self.bias_init,
            self.scale_init,
            self.force_float32_reductions,
        )


class RMSNorm(Module):
    """Root-mean-square normalization: ``x * rsqrt(mean(x^2) + eps) * scale``.

    Attributes:
      epsilon: added to the mean square.
      dtype: the dtype of the result (default: inferred).
      param_dtype: the dtype of the scale.
      use_scale: learn a scale.
      scale_init: initializer for the scale.
      reduction_axes: axes to compute the mean square over.
      feature_axes: axes with one learned scale entry per position.
      axis_name: named axis to average over.
      axis_index_groups: subgroups of ``axis_name``.
      use_fast_variance: kept for signature compatibility (no mean is subtracted).
      force_float32_reductions: compute statistics in at least float32.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from plait import linen as nn
      >>> x = jnp.array([[3.0, 4.0]])
      >>> norm = nn.RMSNorm(epsilon=0.0)
      >>> y = norm.apply(norm.init(jax.random.key(0), x), x)
      >>> [round(float(v), 4) for v in y[0]]
      [0.8485, 1.1314]
    """

    epsilon: float = 1e-6
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    use_scale: bool = True
    scale_init: Any = initializers.ones
    reduction_axes: Axes = -1
    feature_axes: Axes = -1
    axis_name: str | None = None
    axis_index_groups: Any = None
    use_fast_variance: bool = True
    force_float32_reductions: bool = True

    @compact
    def __call__(self, x: Array, *, mask: Array | None = None) -> Array:
        """Normalizes ``x`` by its root mean square over ``reduction_axes``."""
        mean, var = _compute_stats(
            x,
            self.reduction_axes,
            self.dtype,
            self.axis_name,
            self.axis_index_groups,
            use_mean=False,
            use_fast_variance=self.use_fast_variance,
            mask=mask,
            force_float32_reductions=self.force_float32_reductions,
        )
        return _normalize(
            self,
            x,
            mean,
            var,
            self.reduction_axes,
            self.feature_axes,
            self.dtype,
            self.param_dtype,
            self.epsilon,
            False,
            self.use_scale,
            initializers.zeros,
            self.scale_init,
            self.force_float32_reductions,
        )


class GroupNorm(Module):
    """Group normalization: channels split into groups, statistics per group.

    Exactly one of ``num_groups`` and ``group_size`` must be set (pass
    ``num_groups=None`` to use ``group_size``). The last axis holds the channels.

    Attributes:
      num_groups: the number of groups (default 32).
      group_size: channels per group.
      epsilon: added to the variance.
      dtype: the dtype of the result (default: inferred).
      param_dtype: the dtype of scale and bias.
      use_bias: learn a bias.
      use_scale: learn a scale.
      bias_init: initializer for the bias.
      scale_init: initializer for the scale.
      reduction_axes: axes reduced for the statistics; must include the last axis
        (default: every axis but the first).
      axis_name: named axis to average over.
      axis_index_groups: subgroups of ``axis_name``.
      use_fast_variance: compute the variance as ``E[x^2] - E[x]^2``.
      force_float32_reductions: compute statistics in at least float32.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from plait import linen as nn
      >>> x = jnp.ones((2, 5, 4))
      >>> gn = nn.GroupNorm(num_groups=2)
      >>> jax.tree.map(jnp.shape, gn.init(jax.random.key(0), x))
      {'params': {'bias': (4,), 'scale': (4,)}}
    """

    num_groups: int | None = 32
    group_size: int | None = None
    epsilon: float = 1e-6
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    use_bias: bool = True
    use_scale: bool = True
    bias_init: Any = initializers.zeros
    scale_init: Any = initializers.ones
    reduction_axes: Axes | None = None
    axis_name: str | None = None
    axis_index_groups: Any = None
    use_fast_variance: bool = True
    force_float32_reductions: bool = True

    @compact
    def __call__(self, x: Array, *, mask: Array | None = None) -> Array:
        """Normalizes ``x`` of shape ``(batch, ..., channels)`` per channel group."""
        if self.reduction_axes is not None:
            reduction_axes = self.reduction_axes
        else:
            reduction_axes = list(range(1, x.ndim - 1)) + [-1]
        reduction_axes = canonicalize_axes(x.ndim, reduction_axes)
        if reduction_axes[-1] != x.ndim - 1:
            raise LayerConfigError(
                f"{describe(self)}: reduction_axes {reduction_axes} must include the "
                f"last axis ({x.ndim - 1}), which holds the channels."
            )
        if (self.num_groups is None) == (self.group_size is None):
            raise LayerConfigError(
                f"{describe(self)}: set exactly one of num_groups and group_size (got "
                f"num_groups={self.num_groups}, group_size={self.group_size}). To use "
                "group_size, pass num_groups=None to override the default of 32."
            )
        channels = x.shape[-1]
        if self.group_size is not None:
            if channels % self.group_size:
                raise LayerShapeError(
                    f"{describe(self)}: the inputs have {channels} channels (shape "
                    f"{tuple(x.shape)}), not a multiple of group_size={self.group_size}."
                )
            num_groups = channels // self.group_size
        else:
            num_groups = self.num_groups
        if num_groups <= 0 or channels % num_groups:
            raise LayerShapeError(
                f"{describe(self)}: num_groups={num_groups} does not divide the "
                f"{channels} channels of the inputs (shape {tuple(x.shape)}). Choose "
                "num_groups dividing the channel count, or set group_size."
            )
        group_size = channels // num_groups
        grouped_shape = x.shape[:-1] + (num_groups, group_size)
        if mask is not None:
            mask = mask.reshape(mask.shape[:-1] + (num_groups, group_size))
        mean, var = _compute_stats(
            x.reshape(grouped_shape),
            list(reduction_axes[:-1]) + [-1],
            self.dtype,
            self.axis_name,
            self.axis_index_groups,
            use_fast_variance=self.use_fast_variance,
            mask=mask,
            force_float32_reductions=self.force_float32_reductions,
        )
        # Back from one statistic per group to one per channel.
        mean = jnp.repeat(mean, group_size, axis=-1)
        var = jnp.repeat(var, group_size, axis=-1)
        return _normalize(
            self,
            x,
            mean,
            var,
            reduction_axes[:-1],
            (x.ndim - 1,),
            self.dtype,
            self.param_dtype,
            self.epsilon,
            self.use_bias,
            self.use_scale,
            self.bias_init,
            self.scale_init,
            self.force_float32_reductions,
        )


class InstanceNorm(Module):
    """Instance normalization: statistics per example and per channel.

    Every axis except the first (batch) and ``feature_axes`` is reduced.

    Attributes:
      epsilon: added to the variance.
      dtype: the dtype of the result (default: inferred).
      param_dtype: the dtype of scale and bias.
      use_bias: learn a bias.
      use_scale: learn a scale.
      bias_init: initializer for the bias.
      scale_init: initializer for the scale.
      feature_axes: the channel axes (must not include axis 0).
      axis_name: named axis to average over.
      axis_index_groups: subgroups of ``axis_name``.
      use_fast_variance: compute the variance as ``E[x^2] - E[x]^2``.
      force_float32_reductions: compute statistics in at least float32.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from plait import linen as nn
      >>> x = jnp.ones((2, 3, 4, 5))
      >>> norm = nn.InstanceNorm()
      >>> jax.tree.map(jnp.shape, norm.init(jax.random.key(0), x))
      {'params': {'bias': (5,), 'scale': (5,)}}
    """

    epsilon: float = 1e-6
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    use_bias: bool = True
    use_scale: bool = True
    bias_init: Any = initializers.zeros
    scale_init: Any = initializers.ones
    feature_axes: Axes = -1
    axis_name: str | None = None
    axis_index_groups: Any = None
    use_fast_variance: bool = True
    force_float32_reductions: bool = True

    @compact
    def __call__(self, x: Array, *, mask: Array | None = None) -> Array:
        """Normalizes each channel of each example of ``x``."""
        feature_axes = canonicalize_axes(x.ndim, self.feature_axes)
        if 0 in feature_axes:
            raise LayerConfigError(
                f"{describe(self)}: feature_axes {feature_axes} include axis 0, which "
                "InstanceNorm treats as the batch axis. Use channel axes >= 1."
            )
        reduction_axes = [i for i in range(1, x.ndim) if i not in feature_axes]
        mean, var = _compute_stats(
            x,
            reduction_axes,
            self.dtype,
            self.axis_name,
            self.axis_index_groups,
            use_fast_variance=self.use_fast_variance,
            mask=mask,
            force_float32_reductions=self.force_float32_reductions,
        )
        return _normalize(
            self,
            x,
            mean,
            var,
            reduction_axes,
            feature_axes,
            self.dtype,
            self.param_dtype,
            self.epsilon,
            self.use_bias,
            self.use_scale,
            self.bias_init,
            self.scale_init,
            self.force_float32_reductions,
        )
