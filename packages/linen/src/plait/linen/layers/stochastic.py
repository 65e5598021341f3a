"""Dropout (``flax.linen.stochastic``)."""

from __future__ import annotations

from ._stochastic import Dropout as Dropout

__all__ = [
    "Dropout",
]
