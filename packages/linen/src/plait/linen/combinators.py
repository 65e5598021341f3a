"""Combinators (Flax's ``flax.linen.combinators``)."""

from ._combinators import Sequential as Sequential
