"""Helpers (``nnx.helpers``): container Modules and the functional ``TrainState``."""

from ._containers import Dict as Dict
from ._containers import List as List
from ._containers import Sequential as Sequential
from ._containers import has_keyword_arg as has_keyword_arg
from ._helpers import TrainState as TrainState
