"""Normalization layers (Flax NNX ``nnx.nn.normalization``).

The statistics and the normalization itself are the stateless functions of
``plait.core.nn.normalization``; these classes own the parameters and, for BatchNorm,
the running averages (``BatchStat`` variables).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from plait.core import BatchStat, Param, PathContains, Rngs, to_predicate
from plait.core.nn import dtypes, initializers
from plait.core.nn.normalization import canonicalize_axes, compute_stats, normalize

from .._errors import check_feature_axis, shape_error
from .._module import Module
from ._common import first_from, value_or_none
from ._layer_helpers import keep_arguments, optional_param

Array = jax.Array
_EMPTY: Mapping[str, Any] = MappingProxyType({})
_KERNEL_PATHS = PathContains("kernel")
_ONES_INIT = initializers.ones_init()
_ZEROS_INIT = initializers.zeros_init()


# The constructor arguments each layer keeps as attributes, in the order it stores them.
_BATCH_NORM_ARGUMENTS = (
    "num_features use_running_average axis momentum epsilon dtype param_dtype use_bias"
    " use_scale bias_init scale_init axis_name axis_index_groups use_fast_variance promote_dtype"
)
_LAYER_NORM_ARGUMENTS = (
    "num_features epsilon dtype param_dtype use_bias use_scale bias_init scale_init"
    " reduction_axes feature_axes axis_name axis_index_groups use_fast_variance promote_dtype"
)
_RMS_NORM_ARGUMENTS = (
    "num_features epsilon dtype param_dtype use_scale scale_init reduction_axes feature_axes"
    " axis_name axis_index_groups use_fast_variance promote_dtype"
)
_GROUP_NORM_ARGUMENTS = (
    "num_features epsilon dtype param_dtype use_bias use_scale bias_init scale_init"
    " reduction_axes axis_name axis_index_groups use_fast_variance promote_dtype"
)
_INSTANCE_NORM_ARGUMENTS = (
    "num_features epsilon dtype param_dtype use_bias use_scale bias_init scale_init"
    " feature_axes axis_name axis_index_groups use_fast_variance promote_dtype"
)
_WEIGHT_NORM_ARGUMENTS = (
    "layer_instance feature_axes use_scale scale_init epsilon dtype param_dtype variable_filter"
    " promote_dtype"
)
_SPECTRAL_NORM_ARGUMENTS = (
    "layer_instance n_steps epsilon dtype param_dtype error_on_non_matrix update_stats"
)


def _check_features(module: Any, x: Array, feature_axes: Any) -> None:
    axes = canonicalize_axes(x.ndim, feature_axes) if x.ndim else ()
    sizes = tuple(x.shape[a] for a in axes)
    if len(axes) == 1:
        check_feature_axis(
            module, x, axis=axes[0], size=module.num_features, param="num_features", argument="x"
        )
    elif math.prod(sizes) != module.num_features:
        raise shape_error(
            module,
            argument="x",
            expected=f"feature axes {axes} holding {module.num_features} features",
            actual=x.shape,
            fix="make the feature axes of the input match num_features.",
        )


class _Normalization(Module):
    """The statistics and normalization step shared by the normalization layers.

    Subclasses store the attributes read here (``dtype``, ``epsilon``, ``scale``,
    ``axis_name``, ...) under their constructor names.
    """

    def _statistics(
        self, x: Array, reduction_axes: Any, mask: Array | None, *, use_mean: bool = True
    ) -> tuple[Array, Array]:
        return compute_stats(
            x,
            reduction_axes,
            self.dtype,
            self.axis_name,
            self.axis_index_groups,
            use_mean=use_mean,
            use_fast_variance=self.use_fast_variance,
            mask=mask,
        )

    def _normalize(
        self, x: Array, mean: Array, var: Array, reduction_axes: Any, feature_axes: Any
    ) -> Array:
        return normalize(
            x,
            mean,
            var,
            value_or_none(self.scale),
            self._bias_value(),
            reduction_axes,
            feature_axes,
            self.dtype,
            self.epsilon,
        )

    def _bias_value(self) -> Array | None:
        return value_or_none(self.bias)


class BatchNorm(_Normalization):
    """Batch normalization with running statistics.

    In training (``use_running_average=False``) the batch mean and variance normalize the
    input and update the running averages ``mean`` / ``var`` (``BatchStat``) as
    ``ra = momentum * ra + (1 - momentum) * batch_stat``; in evaluation the running
    averages are used. ``train()`` / ``eval()`` on a parent module flip the flag.

    Examples:
      >>> import jax.numpy as jnp
      >>> from plait import nnx
      >>> bn = nnx.BatchNorm(3, rngs=nnx.Rngs(0))
      >>> y = bn(jnp.arange(6.0).reshape(2, 3))
      >>> [round(float(m), 3) for m in bn.mean[...]]
      [0.015, 0.025, 0.035]
    """

    def __init__(
        self,
        num_features: int,
        *,
        use_running_average: bool | None = False,
        axis: int = -1,
        momentum: float = 0.99,
        epsilon: float = 1e-5,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        use_bias: bool = True,
        use_scale: bool = True,
        bias_init: Any = _ZEROS_INIT,
        scale_init: Any = _ONES_INIT,
        axis_name: str | None = None,
        axis_index_groups: Any = None,
        use_fast_variance: bool = True,
        promote_dtype: Any = dtypes.promote_dtype,
        rngs: Rngs,
        bias_metadata: Mapping[str, Any] = _EMPTY,
        scale_metadata: Mapping[str, Any] = _EMPTY,
    ):
        shape = (num_features,)
        self.mean = BatchStat(jnp.zeros(shape, jnp.float32))
        self.var = BatchStat(jnp.ones(shape, jnp.float32))
        self.scale = optional_param(use_scale, scale_init, scale_metadata, shape, param_dtype, rngs)
        self.bias = optional_param(use_bias, bias_init, bias_metadata, shape, param_dtype, rngs)
        keep_arguments(self, locals(), _BATCH_NORM_ARGUMENTS)

    def __call__(
        self, x: Array, use_running_average: bool | None = None, *, mask: Array | None = None
    ) -> Array:
        """Normalizes ``x``; in training also updates the running statistics."""
        use_running_average = first_from(
            use_running_average,
            self.use_running_average,
            error_msg=(
                "BatchNorm: use_running_average is None both in the call and on the module. "
                "Pass use_running_average=True/False, or call model.train() / model.eval()."
            ),
        )
        _check_features(self, x, self.axis)
        feature_axes = canonicalize_axes(x.ndim, self.axis)
        reduction_axes = tuple(i for i in range(x.ndim) if i not in feature_axes)
        if use_running_average:
            mean, var = self.mean[...], self.var[...]
        else:
            mean, var = self._statistics(x, reduction_axes, mask)
            self.mean[...] = self.momentum * self.mean[...] + (1 - self.momentum) * mean
            self.var[...] = self.momentum * self.var[...] + (1 - self.momentum) * var
        return self._normalize(x, mean, var, reduction_axes, feature_axes)

    def set_view(self, use_running_average: bool | None = None) -> None:
        """Sets ``use_running_average`` (None leaves it unchanged)."""
        if use_running_average is not None:
            self.use_running_average = use_running_average


class LayerNorm(_Normalization):
    """Layer normalization: each example normalized over ``reduction_axes``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from plait import nnx
      >>> ln = nnx.LayerNorm(2, epsilon=0.0, rngs=nnx.Rngs(0))
      >>> ln(jnp.array([[1.0, 3.0]])).tolist()
      [[-1.0, 1.0]]
    """

    def __init__(
        self,
        num_features: int,
        *,
        epsilon: float = 1e-6,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        use_bias: bool = True,
        use_scale: bool = True,
        bias_init: Any = _ZEROS_INIT,
        scale_init: Any = _ONES_INIT,
        reduction_axes: Any = -1,
        feature_axes: Any = -1,
        axis_name: str | None = None,
        axis_index_groups: Any = None,
        use_fast_variance: bool = True,
        promote_dtype: Any = dtypes.promote_dtype,
        rngs: Rngs,
        bias_metadata: Mapping[str, Any] = _EMPTY,
        scale_metadata: Mapping[str, Any] = _EMPTY,
    ):
        shape = (num_features,)
        self.scale = optional_param(use_scale, scale_init, scale_metadata, shape, param_dtype, rngs)
        self.bias = optional_param(use_bias, bias_init, bias_metadata, shape, param_dtype, rngs)
        keep_arguments(self, locals(), _LAYER_NORM_ARGUMENTS)

    def __call__(self, x: Array, *, mask: Array | None = None) -> Array:
        """Normalizes ``x`` over ``reduction_axes``."""
        _check_features(self, x, self.feature_axes)
        mean, var = self._statistics(x, self.reduction_axes, mask)
        return self._normalize(x, mean, var, self.reduction_axes, self.feature_axes)


class RMSNorm(_Normalization):
    """Root-mean-square normalization: ``x * rsqrt(mean(x^2) + eps) * scale`` (no centring).

    Examples:
      >>> import jax.numpy as jnp
      >>> from plait import nnx
      >>> rms = nnx.RMSNorm(2, epsilon=0.0, rngs=nnx.Rngs(0))
      >>> [round(float(v), 4) for v in rms(jnp.array([[3.0, 4.0]]))[0]]
      [0.8485, 1.1314]
    """

    def __init__(
        self,
        num_features: int,
        *,
        epsilon: float = 1e-6,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        use_scale: bool = True,
        scale_init: Any = initializers.ones,
        reduction_axes: Any = -1,
        feature_axes: Any = -1,
        axis_name: str | None = None,
        axis_index_groups: Any = None,
        use_fast_variance: bool = True,
        promote_dtype: Any = dtypes.promote_dtype,
        rngs: Rngs,
        scale_metadata: Mapping[str, Any] = _EMPTY,
    ):
        shape = (num_features,)
        self.scale = optional_param(use_scale, scale_init, scale_metadata, shape, param_dtype, rngs)
        keep_arguments(self, locals(), _RMS_NORM_ARGUMENTS)

    def __call__(self, x: Array, mask: Array | None = None) -> Array:
        """Scales ``x`` by the reciprocal root mean square over ``reduction_axes``."""
        _check_features(self, x, self.feature_axes)
        mean, var = self._statistics(x, self.reduction_axes, mask, use_mean=False)
        return self._normalize(x, mean, var, self.reduction_axes, self.feature_axes)

    def _bias_value(self) -> None:
        # RMSNorm only rescales; it has no bias to shift by.
        return None


class GroupNorm(_Normalization):
    """Group normalization: features split into groups, each normalized per example.

    Give either ``num_groups`` or ``group_size`` (set ``num_groups=None`` to use
    ``group_size``). By default statistics are taken over every axis but the first
    (batch); ``reduction_axes`` overrides that and must include the last axis.

    Examples:
      >>> import jax.numpy as jnp
      >>> from plait import nnx
      >>> gn = nnx.GroupNorm(4, num_groups=2, rngs=nnx.Rngs(0))
      >>> gn(jnp.ones((2, 3, 4))).shape
      (2, 3, 4)
    """

    def __init__(
        self,
        num_features: int,
        num_groups: int | None = 32,
        group_size: int | None = None,
        *,
        epsilon: float = 1e-6,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        use_bias: bool = True,
        use_scale: bool = True,
        bias_init: Any = _ZEROS_INIT,
        scale_init: Any = _ONES_INIT,
        reduction_axes: Any = None,
        axis_name: str | None = None,
        axis_index_groups: Any = None,
        use_fast_variance: bool = True,
        promote_dtype: Any = dtypes.promote_dtype,
        rngs: Rngs,
        bias_metadata: Mapping[str, Any] = _EMPTY,
        scale_metadata: Mapping[str, Any] = _EMPTY,
    ):
        if (num_groups is None) == (group_size is None):
            raise ValueError(
                "GroupNorm: give exactly one of num_groups and group_size (got "
                f"num_groups={num_groups}, group_size={group_size}). To use group_size, "
                "pass num_groups=None, since num_groups defaults to 32."
            )
        if group_size is not None:
            if num_features % group_size != 0:
                raise ValueError(
                    f"GroupNorm: num_features={num_features} is not a multiple of "
                    f"group_size={group_size}."
                )
            num_groups = num_features // group_size
        else:
            assert num_groups is not None
            if num_groups <= 0 or num_features % num_groups != 0:
                raise ValueError(
                    f"GroupNorm: num_groups={num_groups} does not divide "
                    f"num_features={num_features}."
                )
            group_size = num_features // num_groups
        self.num_groups = num_groups
        self.group_size = group_size
        shape = (num_features,)
        self.scale = optional_param(use_scale, scale_init, scale_metadata, shape, param_dtype, rngs)
        self.bias = optional_param(use_bias, bias_init, bias_metadata, shape, param_dtype, rngs)
        self.feature_axis = -1
        keep_arguments(self, locals(), _GROUP_NORM_ARGUMENTS)

    def __call__(self, x: Array, *, mask: Array | None = None) -> Array:
        """Normalizes each group of features."""
        _check_features(self, x, -1)
        if self.reduction_axes is not None:
            reduction_axes = self.reduction_axes
        else:
            reduction_axes = list(range(1, x.ndim - 1)) + [-1]
        reduction_axes = canonicalize_axes(x.ndim, reduction_axes)
        grouped = x.reshape(x.shape[:-1] + (self.num_groups, self.group_size))
        if mask is not None:
            mask = mask.reshape(mask.shape[:-1] + (self.num_groups, self.group_size))
        # In the grouped view the old last axis is now the group_size axis (-1); the
        # group axis is kept so each group gets its own statistics.
        mean, var = self._statistics(grouped, list(reduction_axes[:-1]) + [-1], mask)
        mean = jnp.repeat(mean, self.group_size, axis=-1)
        var = jnp.repeat(var, self.group_size, axis=-1)
        return self._normalize(x, mean, var, reduction_axes[:-1], (self.feature_axis,))


class InstanceNorm(_Normalization):
    """Instance normalization: each example and feature normalized over the other axes.

    Statistics are taken over every axis except the first (batch) and ``feature_axes``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from plait import nnx
      >>> norm = nnx.InstanceNorm(2, rngs=nnx.Rngs(0))
      >>> norm(jnp.ones((2, 5, 2))).shape
      (2, 5, 2)
    """

    def __init__(
        self,
        num_features: int,
        *,
        epsilon: float = 1e-6,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        use_bias: bool = True,
        use_scale: bool = True,
        bias_init: Any = initializers.zeros,
        scale_init: Any = initializers.ones,
        feature_axes: Any = -1,
        axis_name: str | None = None,
        axis_index_groups: Any = None,
        use_fast_variance: bool = True,
        promote_dtype: Any = dtypes.promote_dtype,
        rngs: Rngs,
        bias_metadata: Mapping[str, Any] = _EMPTY,
        scale_metadata: Mapping[str, Any] = _EMPTY,
    ):
        shape = (num_features,)
        self.scale = optional_param(use_scale, scale_init, scale_metadata, shape, param_dtype, rngs)
        self.bias = optional_param(use_bias, bias_init, bias_metadata, shape, param_dtype, rngs)
        keep_arguments(self, locals(), _INSTANCE_NORM_ARGUMENTS)

    def __call__(self, x: Array, *, mask: Array | None = None) -> Array:
        """Normalizes each example and feature over the remaining axes."""
        _check_features(self, x, self.feature_axes)
        feature_axes = canonicalize_axes(x.ndim, self.feature_axes)
        if 0 in feature_axes:
            raise ValueError(
                "InstanceNorm: axis 0 is the batch axis and cannot be a feature axis; "
                f"got feature_axes={self.feature_axes}."
            )
        reduction_axes = tuple(i for i in range(1, x.ndim) if i not in feature_axes)
        mean, var = self._statistics(x, reduction_axes, mask)
        return self._normalize(x, mean, var, reduction_axes, feature_axes)


def _path_key(path: tuple[Any, ...]) -> str:
    return "/".join(str(p) for p in path)


def _matching_variables(module: Any, predicate: Any) -> list[tuple[str, Any]]:
    """(key, Variable) pairs of ``module`` whose path/variable match ``predicate``."""
    from plait.core import Variable, iter_graph

    found = []
    for path, node in iter_graph(module):
        if isinstance(node, Variable) and predicate(tuple(path), node):
            found.append((_path_key(tuple(path)), node))
    return found


def _l2_normalize(x: Array, axes: tuple[int, ...], eps: float) -> Array:
    return x * lax.rsqrt((x * x).sum(axis=axes, keepdims=True) + eps)


class _Reparametrized:
    """Temporarily replaces Variable values while the wrapped layer runs."""

    def __init__(self, replacements: list[tuple[Any, Array]]):
        self.replacements = replacements
        self.saved: list[tuple[Any, Array]] = []

    def __enter__(self) -> None:
        for variable, value in self.replacements:
            self.saved.append((variable, variable[...]))
            variable[...] = value

    def __exit__(self, *exc: Any) -> None:
        for variable, value in reversed(self.saved):
            variable[...] = value


class WeightNorm(Module):
    """Weight normalization of another layer's parameters (Salimans & Kingma, 2016).

    Each parameter of ``layer_instance`` selected by ``variable_filter`` (default: those
    whose path contains ``'kernel'``) is used as ``w / ||w|| * scale``, the norm taken
    over every axis except ``feature_axes`` (None: over all axes). ``scale`` is a learned
    Param with the sizes of the feature axes, stored in ``self.scales`` under the
    parameter's path.

    Examples:
      >>> import jax.numpy as jnp
      >>> from plait import nnx
      >>> layer = nnx.WeightNorm(nnx.Linear(3, 2, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(1))
      >>> layer(jnp.ones((1, 3))).shape
      (1, 2)
      >>> layer.scales['kernel'].shape
      (2,)
    """

    def __init__(
        self,
        layer_instance: Module,
        *,
        feature_axes: Any = -1,
        use_scale: bool = True,
        scale_init: Any = initializers.ones,
        epsilon: float = 1e-12,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        variable_filter: Any = _KERNEL_PATHS,
        promote_dtype: Any = dtypes.promote_dtype,
        rngs: Rngs,
    ):
        keep_arguments(self, locals(), _WEIGHT_NORM_ARGUMENTS)
        predicate = to_predicate(variable_filter)
        scales = {}
        if use_scale:
            for key, variable in _matching_variables(layer_instance, predicate):
                feature_axes_ = self._feature_axes(variable[...].ndim)
                shape = tuple(variable.shape[a] for a in feature_axes_)
                scales[key] = Param(scale_init(rngs.params(), shape, param_dtype))
        self.scales = scales

    def _feature_axes(self, ndim: int) -> tuple[int, ...]:
        return () if self.feature_axes is None else canonicalize_axes(ndim, self.feature_axes)

    def _normalized(self, key: str, value: Array) -> Array:
        feature_axes = self._feature_axes(value.ndim)
        reduction_axes = tuple(i for i in range(value.ndim) if i not in feature_axes)
        value_bar = _l2_normalize(value, reduction_axes, self.epsilon)
        present = [value]
        if self.use_scale:
            stats_shape = [1 if i in reduction_axes else n for i, n in enumerate(value.shape)]
            scale = jnp.reshape(self.scales[key][...], stats_shape)
            value_bar = value_bar * scale
            present.append(scale)
        return jnp.asarray(value_bar, dtypes.canonicalize_dtype(*present, dtype=self.dtype))

    def __call__(self, x: Array, *args: Any, **kwargs: Any) -> Array:
        """Calls the wrapped layer with its selected parameters weight-normalized."""
        predicate = to_predicate(self.variable_filter)
        replacements = [
            (variable, self._normalized(key, variable[...]))
            for key, variable in _matching_variables(self.layer_instance, predicate)
        ]
        with _Reparametrized(replacements):
            return self.layer_instance(x, *args, **kwargs)


class SpectralNorm(Module):
    """Spectral normalization of another layer's weight matrices (Miyato et al., 2018).

    Every Param of ``layer_instance`` with two or more axes is divided by an estimate of
    its largest singular value, found by ``n_steps`` power iterations from a persistent
    vector ``u`` (a ``BatchStat``). Parameters with more than two axes are flattened to
    ``(-1, last_axis)``, or rejected when ``error_on_non_matrix``. With ``update_stats``
    the estimates ``u`` and ``sigma`` are written back after each call.

    Examples:
      >>> import jax.numpy as jnp
      >>> from plait import nnx
      >>> layer = nnx.SpectralNorm(nnx.Linear(3, 4, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(1))
      >>> layer(jnp.ones((1, 3))).shape
      (1, 4)
    """

    def __init__(
        self,
        layer_instance: Module,
        *,
        n_steps: int = 1,
        epsilon: float = 1e-12,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        error_on_non_matrix: bool = False,
        update_stats: bool = True,
        rngs: Rngs,
    ):
        keep_arguments(self, locals(), _SPECTRAL_NORM_ARGUMENTS)
        stats = {}
        for key, variable in self._targets():
            columns = variable.shape[-1]
            stats[key] = {
                "u": BatchStat(jax.random.normal(rngs.params(), (1, columns), param_dtype)),
                "sigma": BatchStat(jnp.ones((), param_dtype)),
            }
        self.batch_stats = stats

    def _targets(self) -> list[tuple[str, Any]]:
        def predicate(path: Any, variable: Any) -> bool:
            return isinstance(variable, Param) and jnp.ndim(variable[...]) > 1

        targets = _matching_variables(self.layer_instance, predicate)
        if self.error_on_non_matrix:
            for key, variable in targets:
                if variable[...].ndim > 2:
                    raise ValueError(
                        f"SpectralNorm: parameter {key!r} has shape {variable.shape}, not a "
                        "matrix, and error_on_non_matrix=True. Pass error_on_non_matrix=False "
                        "to flatten it to (-1, last_axis)."
                    )
        return targets

    def _normalized(self, key: str, value: Array, update_stats: bool) -> Array:
        matrix = value.reshape(-1, value.shape[-1])
        u = self.batch_stats[key]["u"][...]
        v = None
        for _ in range(self.n_steps):
            v = _l2_normalize(u @ matrix.T, (-1,), self.epsilon)
            u = _l2_normalize(v @ matrix, (-1,), self.epsilon)
        if v is None:  # n_steps == 0: derive v from the stored u
            v = _l2_normalize(u @ matrix.T, (-1,), self.epsilon)
        u = lax.stop_gradient(u)
        v = lax.stop_gradient(v)
        sigma = (v @ matrix @ u.T)[0, 0]
        matrix = matrix / jnp.where(sigma != 0, sigma, 1)
        if update_stats:
            self.batch_stats[key]["u"][...] = u
            self.batch_stats[key]["sigma"][...] = sigma
        dtype = dtypes.canonicalize_dtype(value, u, dtype=self.dtype)
        return jnp.asarray(matrix.reshape(value.shape), dtype)

    def __call__(self, x: Array, update_stats: bool | None = None) -> Array:
        """Calls the wrapped layer with spectrally normalized weights."""
        update = first_from(
            update_stats,
            self.update_stats,
            error_msg="SpectralNorm: update_stats is None in the call and on the module.",
        )
        replacements = [
            (variable, self._normalized(key, variable[...], update))
            for key, variable in self._targets()
        ]
        with _Reparametrized(replacements):
            return self.layer_instance(x)
