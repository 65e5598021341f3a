"""Low-rank adaptation (Hu et al., 2021): LoRA, LoRALinear and the LoRAParam type."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import jax
import jax.numpy as jnp
from plait.core import Param, Rngs
from plait.core.nn import dtypes, initializers

from .._errors import check_feature_axis
from .._module import Module
from ._linear import Linear

Array = jax.Array
_EMPTY: Mapping[str, Any] = MappingProxyType({})

default_a_initializer = initializers.he_uniform()
default_b_initializer = initializers.zeros


class LoRAParam(Param):
    """A Param holding LoRA adapter weights, so filters can select (or exclude) them.

    Examples:
      >>> from plait import nnx
      >>> issubclass(nnx.LoRAParam, nnx.Param)
      True
    """


class LoRA(Module):
    """A low-rank update ``x @ lora_a @ lora_b`` (plus ``base_module(x)`` if given).

    ``lora_a`` is ``(in_features, lora_rank)`` (He-uniform), ``lora_b`` is
    ``(lora_rank, out_features)`` (zeros), so a fresh adapter adds nothing.

    Examples:
      >>> import jax.numpy as jnp
      >>> from plait import nnx
      >>> base = nnx.Linear(3, 4, rngs=nnx.Rngs(0))
      >>> lora = nnx.LoRA(3, 2, 4, base_module=base, rngs=nnx.Rngs(1))
      >>> x = jnp.ones((1, 3))
      >>> bool(jnp.allclose(lora(x), base(x)))
      True
    """

    def __init__(
        self,
        in_features: int,
        lora_rank: int,
        out_features: int,
        *,
        base_module: Module | None = None,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        a_initializer: Any = default_a_initializer,
        b_initializer: Any = default_b_initializer,
        lora_param_type: type = LoRAParam,
        promote_dtype: Any = dtypes.promote_dtype,
        rngs: Rngs,
        a_metadata: Mapping[str, Any] = _EMPTY,
        b_metadata: Mapping[str, Any] = _EMPTY,
    ):
        self.in_features = in_features
        self.out_features = out_features
        self.lora_rank = lora_rank
        self.base_module = base_module
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.lora_param_type = lora_param_type
        self.promote_dtype = promote_dtype
        self.lora_a = lora_param_type(
            a_initializer(rngs.params(), (in_features, lora_rank), param_dtype), **dict(a_metadata)
        )
        self.lora_b = lora_param_type(
            b_initializer(rngs.params(), (lora_rank, out_features), param_dtype), **dict(b_metadata)
        )

    def __call__(self, x: Array, **kwargs: Any) -> Array:
        """``x @ lora_a @ lora_b``, plus ``base_module(x, **kwargs)`` when there is one."""
        check_feature_axis(self, x, size=self.in_features, param="in_features", argument="x")
        x, lora_a, lora_b = self.promote_dtype(
            (x, self.lora_a[...], self.lora_b[...]), dtype=self.dtype
        )
        out = x @ lora_a @ lora_b
        if self.base_module is not None:
            if not callable(self.base_module):
                raise ValueError(
                    f"LoRA: base_module of type {type(self.base_module).__name__} is not "
                    "callable; pass a Module with __call__ (e.g. nnx.Linear)."
                )
            out = out + self.base_module(x, **kwargs)
        return out


class LoRALinear(Linear):
    """A :class:`Linear` with a built-in LoRA branch ``lora`` added to its output.

    Extra keyword arguments go to ``Linear``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from plait import nnx
      >>> layer = nnx.LoRALinear(3, 4, lora_rank=2, rngs=nnx.Rngs(0))
      >>> layer.lora.lora_a.shape, layer(jnp.ones((1, 3))).shape
      ((3, 2), (1, 4))
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        lora_rank: int,
        lora_dtype: Any = None,
        lora_param_dtype: Any = jnp.float32,
        a_initializer: Any = default_a_initializer,
        b_initializer: Any = default_b_initializer,
        lora_param_type: type = LoRAParam,
        lora_promote_dtype: Any = dtypes.promote_dtype,
        rngs: Rngs,
        a_metadata: Mapping[str, Any] = _EMPTY,
        b_metadata: Mapping[str, Any] = _EMPTY,
        **kwargs: Any,
    ):
        super().__init__(in_features, out_features, rngs=rngs, **kwargs)
        self.lora = LoRA(
            in_features,
            lora_rank,
            out_features,
            dtype=lora_dtype,
            param_dtype=lora_param_dtype,
            a_initializer=a_initializer,
            b_initializer=b_initializer,
            lora_param_type=lora_param_type,
            promote_dtype=lora_promote_dtype,
            rngs=rngs,
            a_metadata=a_metadata,
            b_metadata=b_metadata,
        )

    def __call__(self, x: Array, out_sharding: Any = None) -> Array:
        """``Linear(x) + lora(x)``."""
        return super().__call__(x, out_sharding=out_sharding) + self.lora(x)
