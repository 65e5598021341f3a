"""SpectralNorm and WeightNorm: wrappers that re-parameterize another layer's weights.

Both run the wrapped layer under ``map_variables``: the layer's own variables stay
untouched in the variables dict, and a normalized copy is what the layer sees
during the call. The wrapper's extra state is stored in the wrapper's own scope
under names built from the wrapped layer's name and the variable's path, e.g.
``'Dense_0/kernel/scale'``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
from plait.core.nn import initializers
from plait.core.nn.dtypes import canonicalize_dtype

from ._base import Module, compact, map_variables
from ._common import canonicalize_axes, describe
from ._errors import LayerShapeError

Array = Any
Dtype = Any


def _l2_normalize(x: Array, axis: Any = None, eps: float = 1e-12) -> Array:
    """``x / ||x||`` over ``axis`` (the rsqrt form is stable for tiny norms)."""
    return x * jax.lax.rsqrt((x * x).sum(axis=axis, keepdims=True) + eps)


def _key_name(entry: Any) -> str:
    # Key-path entries of a nested dict are DictKey(key=...); anything else by str.
    return str(getattr(entry, "key", entry))


def _variable_path(layer: Module, path: tuple[Any, ...]) -> str:
    """``'<layer name>/<path inside the collection>'`` (the collection is dropped)."""
    return "/".join([str(layer.name)] + [_key_name(p) for p in path[1:]])


class SpectralNorm(Module):
    """Divides each weight matrix of ``layer_instance`` by its largest singular value.

    The singular value is estimated by power iteration; the iteration vector ``u``
    and the estimate ``sigma`` live in ``collection_name`` (``batch_stats``) of this
    module under ``'<layer>/<path>/u'`` and ``'<layer>/<path>/sigma'``. Pass
    ``update_stats=True`` (and mark the collection mutable) while training so the
    estimate improves across steps; ``update_stats=False`` for evaluation.
    Scalars and vectors are left alone; tensors of rank > 2 are treated as
    matrices ``(-1, last_axis)``.

    Attributes:
      layer_instance: the module whose weights are normalized.
      n_steps: power iterations per call.
      epsilon: added inside the l2 normalization.
      dtype: the dtype of the normalized weights (default: inferred).
      param_dtype: the dtype of ``u`` and ``sigma``.
      error_on_non_matrix: raise for weights of rank > 2 instead of flattening.
      collection_name: the collection holding ``u`` and ``sigma``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from plait import linen as nn
      >>> class Model(nn.Module):
      ...   @nn.compact
      ...   def __call__(self, x, train):
      ...     return nn.SpectralNorm(nn.Dense(4))(x, update_stats=train)
      >>> x = jnp.ones((1, 3))
      >>> variables = Model().init(jax.random.key(0), x, train=False)
      >>> jax.tree.map(jnp.shape, variables['batch_stats'])
      {'SpectralNorm_0': {'Dense_0/kernel/sigma': (), 'Dense_0/kernel/u': (1, 4)}}
    """

    layer_instance: Module
    n_steps: int = 1
    epsilon: float = 1e-12
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    error_on_non_matrix: bool = False
    collection_name: str = "batch_stats"

    @compact
    def __call__(self, *args, update_stats: bool, **kwargs):
        """Calls the wrapped layer with spectrally normalized weights.

        Args:
          *args: positional arguments of the wrapped layer.
          update_stats: store the new ``u`` and ``sigma``.
          **kwargs: keyword arguments of the wrapped layer.
        """

        def forward(layer: Module):
            return layer(*args, **kwargs)

        normalize = functools.partial(self._spectral_normalize, update_stats=update_stats)
        return map_variables(
            forward,
            trans_in_fn=lambda vs: jax.tree_util.tree_map_with_path(normalize, vs),
            init=self.is_initializing(),
            mutable=True,
        )(self.layer_instance)

    def _spectral_normalize(self, path: tuple[Any, ...], value: Array, update_stats: bool):
        value = jnp.asarray(value)
        original_shape = value.shape
        if value.ndim <= 1 or self.n_steps < 1:
            return value
        name = _variable_path(self.layer_instance, path)
        if value.ndim > 2:
            if self.error_on_non_matrix:
                raise LayerShapeError(
                    f"{describe(self)}: variable '{name}' has shape {original_shape} "
                    "(rank > 2) and error_on_non_matrix=True. Spectral normalization is "
                    "defined for matrices; set error_on_non_matrix=False to normalize "
                    "it as a (-1, last_axis) matrix."
                )
            value = jnp.reshape(value, (-1, value.shape[-1]))

        u_name, sigma_name = f"{name}/u", f"{name}/sigma"
        # Draw the starting vector only when it does not exist yet.
        u_key = None if self.has_variable(self.collection_name, u_name) else self.make_rng("params")
        u_var = self.variable(
            self.collection_name,
            u_name,
            jax.random.normal,
            u_key,
            (1, value.shape[-1]),
            self.param_dtype,
        )
        sigma_var = self.variable(self.collection_name, sigma_name, jnp.ones, (), self.param_dtype)
        u = u_var.value
        v = None
        for _ in range(self.n_steps):
            v = _l2_normalize(jnp.matmul(u, value.T), eps=self.epsilon)
            u = _l2_normalize(jnp.matmul(v, value), eps=self.epsilon)
        u = jax.lax.stop_gradient(u)
        v = jax.lax.stop_gradient(v)
        sigma = jnp.matmul(jnp.matmul(v, value), u.T)[0, 0]
        value = value / jnp.where(sigma != 0, sigma, 1)
        if update_stats:
            u_var.value = u
            sigma_var.value = sigma
        dtype = canonicalize_dtype(value, u, v, sigma, dtype=self.dtype)
        return jnp.asarray(value.reshape(original_shape), dtype)


class WeightNorm(Module):
    """Re-parameterizes weights of ``layer_instance`` as ``scale * w / ||w||``.

    The norm is taken over every axis except ``feature_axes``; ``scale`` (one entry
    per feature) is a parameter of this module named ``'<layer>/<path>/scale'``.
    Only variables whose ``'<layer>/<path>'`` contains one of ``variable_filter``'s
    strings are normalized (all of them when the filter is None or empty).

    Attributes:
      layer_instance: the module whose weights are normalized.
      epsilon: added inside the l2 normalization.
      dtype: the dtype of the normalized weights (default: inferred).
      param_dtype: the dtype of ``scale``.
      use_scale: learn ``scale`` (otherwise weights are just unit-normalized).
      scale_init: initializer of ``scale``.
      feature_axes: axes kept by the norm (None: normalize the whole tensor).
      variable_filter: substrings selecting the variables to normalize.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from plait import linen as nn
      >>> class Model(nn.Module):
      ...   @nn.compact
      ...   def __call__(self, x):
      ...     return nn.WeightNorm(nn.Dense(4))(x)
      >>> variables = Model().init(jax.random.key(0), jnp.ones((1, 3)))
      >>> jax.tree.map(jnp.shape, variables['params']['WeightNorm_0'])
      {'Dense_0/kernel/scale': (4,)}
    """

    layer_instance: Module
    epsilon: float = 1e-12
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    use_scale: bool = True
    scale_init: Any = initializers.ones
    feature_axes: Any = -1
    variable_filter: Iterable | None = dataclasses.field(default_factory=lambda: {"kernel"})

    @compact
    def __call__(self, *args, **kwargs):
        """Calls the wrapped layer with weight-normalized variables."""

        def forward(layer: Module):
            return layer(*args, **kwargs)

        return map_variables(
            forward,
            trans_in_fn=lambda vs: jax.tree_util.tree_map_with_path(self._l2_normalize, vs),
            init=self.is_initializing(),
        )(self.layer_instance)

    def _l2_normalize(self, path: tuple[Any, ...], value: Array):
        original = value
        value = jnp.asarray(value)
        name = _variable_path(self.layer_instance, path)
        if self.variable_filter and not any(f in name for f in self.variable_filter):
            return value
        if self.feature_axes is None:
            feature_axes: tuple[int, ...] = ()
        else:
            feature_axes = canonicalize_axes(value.ndim, self.feature_axes)
        reduction_axes = tuple(i for i in range(value.ndim) if i not in feature_axes)
        broadcast_shape = [1] * value.ndim
        for ax in feature_axes:
            broadcast_shape[ax] = value.shape[ax]
        scale_shape = tuple(value.shape[ax] for ax in feature_axes)

        value = _l2_normalize(value, axis=reduction_axes, eps=self.epsilon)
        dtype_args = [original]
        if self.use_scale:
            scale = self.param(
                f"{name}/scale", self.scale_init, scale_shape, self.param_dtype
            ).reshape(broadcast_shape)
            value = value * scale
            dtype_args.append(scale)
        return jnp.asarray(value, canonicalize_dtype(*dtype_args, dtype=self.dtype))
