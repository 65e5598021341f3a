"""The one place the layers import the Linen module machinery from.

The layers depend on `Module`, `compact`, `nowrap`, `merge_param` and two lifted
transforms, `scan` (for RNN) and `map_variables` (for SpectralNorm / WeightNorm).
The transforms are looked up on the public `plait.linen` namespace when first
called: `plait.linen` imports this package while it is itself being imported, so
a module-level import of the transforms would be circular.
"""

from __future__ import annotations

import importlib
from typing import Any

from .._module import Module as Module
from .._module import compact as compact
from .._module import merge_param as merge_param
from .._module import nowrap as nowrap


def _lifted(name: str) -> Any:
    return getattr(importlib.import_module("plait.linen"), name)


def scan(*args: Any, **kwargs: Any) -> Any:
    """``plait.linen.scan`` (Linen's lifted scan)."""
    return _lifted("scan")(*args, **kwargs)


def map_variables(*args: Any, **kwargs: Any) -> Any:
    """``plait.linen.map_variables`` (Linen's lifted variable mapping)."""
    return _lifted("map_variables")(*args, **kwargs)
