"""Optax optimizers over Variables (``nnx.optimizer``)."""

from ._optimizer import MISSING as MISSING
from ._optimizer import ModelAndOptimizer as ModelAndOptimizer
from ._optimizer import OptArray as OptArray
from ._optimizer import Optimizer as Optimizer
from ._optimizer import OptState as OptState
from ._optimizer import OptVariable as OptVariable
from ._optimizer import to_opt_state as to_opt_state
