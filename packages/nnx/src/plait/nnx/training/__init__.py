"""Training utilities: optax ``Optimizer``, metrics and an exponential moving average."""

from . import ema as ema
from . import metrics as metrics
from . import optimizer as optimizer
from ._ema import EMA as EMA
from ._metrics import Accuracy as Accuracy
from ._metrics import Average as Average
from ._metrics import Metric as Metric
from ._metrics import MetricState as MetricState
from ._metrics import MultiMetric as MultiMetric
from ._metrics import Statistics as Statistics
from ._metrics import Welford as Welford
from ._optimizer import ModelAndOptimizer as ModelAndOptimizer
from ._optimizer import OptArray as OptArray
from ._optimizer import Optimizer as Optimizer
from ._optimizer import OptState as OptState
from ._optimizer import OptVariable as OptVariable
from ._optimizer import to_opt_state as to_opt_state
