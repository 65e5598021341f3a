"""Exponential moving average of Variables (``nnx.training.ema``)."""

from ._ema import EMA as EMA
