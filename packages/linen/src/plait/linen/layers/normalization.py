"""Normalization layers and weight re-parameterizations (``flax.linen.normalization``)."""

from __future__ import annotations

from plait.core.nn.dtypes import canonicalize_dtype as canonicalize_dtype

from ._normalization import BatchNorm as BatchNorm
from ._normalization import GroupNorm as GroupNorm
from ._normalization import InstanceNorm as InstanceNorm
from ._normalization import LayerNorm as LayerNorm
from ._normalization import RMSNorm as RMSNorm
from ._wrappers import SpectralNorm as SpectralNorm
from ._wrappers import WeightNorm as WeightNorm

__all__ = [
    "BatchNorm",
    "canonicalize_dtype",
    "GroupNorm",
    "InstanceNorm",
    "LayerNorm",
    "RMSNorm",
    "SpectralNorm",
    "WeightNorm",
]
