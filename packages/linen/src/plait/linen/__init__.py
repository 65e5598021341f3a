"""plait.linen: functional dataclass modules on plait.core (Flax Linen compatible).

``from plait import linen as nn`` gives the names of ``from flax import linen as nn``:
the Module system, lifted transforms, partitioning helpers and (from ``.layers``) the
layers, activations and initializers. ``plait.linen.partitioning`` (legacy API) and
``plait.linen.training`` (TrainState & co.) are imported explicitly, as in Flax.
"""

from importlib.metadata import version as _version

from plait.core import FrozenDict as FrozenDict
from plait.core import get_logical_axis_rules as get_logical_axis_rules
from plait.core import logical_axis_rules as logical_axis_rules
from plait.core import logical_to_mesh as logical_to_mesh
from plait.core import logical_to_mesh_axes as logical_to_mesh_axes
from plait.core import logical_to_mesh_sharding as logical_to_mesh_sharding
from plait.core import set_logical_axis_rules as set_logical_axis_rules
from plait.core import with_logical_constraint as with_logical_constraint

from . import combinators as combinators
from . import errors as errors
from . import kw_only_dataclasses as kw_only_dataclasses
from . import meta as meta
from . import module as module
from . import spmd as spmd
from . import summary as summary
from . import transforms as transforms
from ._apply import apply as apply
from ._apply import init as init
from ._apply import init_with_output as init_with_output
from ._collections import collection_type as collection_type
from ._collections import from_typed_variables as from_typed_variables
from ._collections import to_typed_variables as to_typed_variables
from ._combinators import Sequential as Sequential
from ._context import compact as compact
from ._context import disable_named_call as disable_named_call
from ._context import enable_named_call as enable_named_call
from ._context import intercept_methods as intercept_methods
from ._context import merge_param as merge_param
from ._context import nowrap as nowrap
from ._context import override_named_call as override_named_call
from ._filters import DenyList as DenyList
from ._meta import PARTITION_NAME as PARTITION_NAME
from ._meta import Partitioned as Partitioned
from ._meta import get_partition_spec as get_partition_spec
from ._meta import get_sharding as get_sharding
from ._meta import unbox as unbox
from ._meta import with_partitioning as with_partitioning
from ._module import Module as Module
from ._name_scope import compact_name_scope as compact_name_scope
from ._name_scope import share_scope as share_scope
from ._scope import Variable as Variable
from ._spmd import LogicallyPartitioned as LogicallyPartitioned
from ._spmd import with_logical_partitioning as with_logical_partitioning
from ._summary import tabulate as tabulate
from ._transforms import add_metadata_axis as add_metadata_axis
from ._transforms import broadcast as broadcast
from ._transforms import checkpoint as checkpoint
from ._transforms import cond as cond
from ._transforms import custom_vjp as custom_vjp
from ._transforms import fold_rngs as fold_rngs
from ._transforms import grad as grad
from ._transforms import jit as jit
from ._transforms import jvp as jvp
from ._transforms import map_variables as map_variables
from ._transforms import named_call as named_call
from ._transforms import remat as remat
from ._transforms import remat_scan as remat_scan
from ._transforms import scan as scan
from ._transforms import switch as switch
from ._transforms import value_and_grad as value_and_grad
from ._transforms import vjp as vjp
from ._transforms import vmap as vmap
from ._transforms import while_loop as while_loop

__version__ = _version("plait-linen")

# Layers, activations, attention, pooling and initializers (explicit ``__all__`` there).
from .layers import *  # noqa: E402, F403

# Flax's layer files are importable by their module paths (``from flax.linen.linear import
# Dense``, ``import flax.linen.initializers``); here they live in ``.layers``, so their paths
# under ``plait.linen`` are registered as aliases of the same module objects.
import sys as _sys  # noqa: E402

from . import layers as _layers  # noqa: E402

for _name in ("activation", "attention", "batch_apply", "dtypes", "fp8_ops", "initializers",
              "linear", "normalization", "pooling", "recurrent", "stochastic"):
    _sys.modules.setdefault(f"{__name__}.{_name}", getattr(_layers, _name))
del _name
