"""Variables (``nnx.variablelib``): the typed, mutable boxes that hold a model's state."""

from plait.core import BatchStat as BatchStat
from plait.core import Cache as Cache
from plait.core import Intermediate as Intermediate
from plait.core import Param as Param
from plait.core import Perturbation as Perturbation
from plait.core import Variable as Variable
from plait.core import VariableMetadata as VariableMetadata
from plait.core import register_variable_name as register_variable_name
from plait.core import variable_name_from_type as variable_name_from_type
from plait.core import variable_type_from_name as variable_type_from_name
from plait.core import with_metadata as with_metadata

from ._graph_api import VarDefaults as VarDefaults
from ._graph_api import use_eager_sharding as use_eager_sharding
from ._graph_api import using_eager_sharding as using_eager_sharding
from ._graph_api import var_defaults as var_defaults
