"""Training utilities (Flax's ``flax.training``): ``train_state``, ``common_utils``,
``early_stopping``, ``dynamic_scale``."""

from . import common_utils as common_utils
from . import dynamic_scale as dynamic_scale
from . import early_stopping as early_stopping
from . import train_state as train_state
