"""plait.nnx: object-oriented neural networks on plait.core, API-compatible with flax.nnx.

Port a Flax program by changing ``from flax import nnx`` to ``from plait import nnx``.
The graph API, Variables, filters, RNG streams, sharding metadata and the lifted
transforms are plait.core's, re-exported unchanged; Module, the containers, training
utilities, summaries and the layers (``nn``) are defined here. See the package README for
the deliberate differences from Flax.
"""

# Where the names come from: ``plait.core`` (Variables, filters, State, graph API, Object,
# Rngs, sharding, pooling), ``.transforms`` (core's lifted transforms plus checkify /
# make_jaxpr / transform_metadata), ``.nn`` (layers, activations, attention functions,
# initializers: ``nn.__all__``), and this package's private modules (Module, containers,
# training, summaries, contexts, extract).

from importlib.metadata import version as _version
from typing import TypeVar as _TypeVar

from plait.core import PARTITION_NAME as PARTITION_NAME
from plait.core import All as All
from plait.core import Any as Any
from plait.core import BatchStat as BatchStat
from plait.core import Cache as Cache
from plait.core import Data as Data
from plait.core import Everything as Everything
from plait.core import FlatState as FlatState
from plait.core import GraphDef as GraphDef
from plait.core import Intermediate as Intermediate
from plait.core import Not as Not
from plait.core import Nothing as Nothing
from plait.core import Object as Object
from plait.core import OfType as OfType
from plait.core import Param as Param
from plait.core import PathContains as PathContains
from plait.core import Perturbation as Perturbation
from plait.core import Pytree as Pytree
from plait.core import RngCount as RngCount
from plait.core import RngKey as RngKey
from plait.core import Rngs as Rngs
from plait.core import RngState as RngState
from plait.core import RngStream as RngStream
from plait.core import State as State
from plait.core import Static as Static
from plait.core import Variable as Variable
from plait.core import VariableMetadata as VariableMetadata
from plait.core import WithTag as WithTag
from plait.core import as_pure as as_pure
from plait.core import call as call
from plait.core import clone as clone
from plait.core import data as data
from plait.core import filter_state as filter_state
from plait.core import find_duplicates as find_duplicates
from plait.core import flatten as flatten
from plait.core import fork_rngs as fork_rngs
from plait.core import from_flat_state as from_flat_state
from plait.core import get_named_sharding as get_named_sharding
from plait.core import get_partition_spec as get_partition_spec
from plait.core import graphdef as graphdef
from plait.core import is_data as is_data
from plait.core import iter_children as iter_children
from plait.core import iter_graph as iter_graph
from plait.core import logical_axis_rules as logical_axis_rules
from plait.core import map_state as map_state
from plait.core import merge_state as merge_state
from plait.core import pop as pop
from plait.core import pure as pure
from plait.core import recursive_map as recursive_map
from plait.core import register_data_type as register_data_type
from plait.core import register_variable_name as register_variable_name
from plait.core import replace_by_pure_dict as replace_by_pure_dict
from plait.core import reseed as reseed
from plait.core import restore_int_paths as restore_int_paths
from plait.core import restore_rngs as restore_rngs
from plait.core import set_graph_mode as set_graph_mode
from plait.core import set_metadata as set_metadata
from plait.core import split as split
from plait.core import split_rngs as split_rngs
from plait.core import split_state as split_state
from plait.core import state as state
from plait.core import static as static
from plait.core import to_flat_state as to_flat_state
from plait.core import to_pure_dict as to_pure_dict
from plait.core import unflatten as unflatten
from plait.core import update as update
from plait.core import variable_name_from_type as variable_name_from_type
from plait.core import variable_type_from_name as variable_type_from_name
from plait.core import variables as variables
from plait.core import with_metadata as with_metadata
from plait.core import with_partitioning as with_partitioning
from plait.core import with_sharding_constraint as with_sharding_constraint
from plait.core.nn.pooling import avg_pool as avg_pool
from plait.core.nn.pooling import max_pool as max_pool
from plait.core.nn.pooling import min_pool as min_pool
from plait.core.nn.pooling import pool as pool

from . import compat as compat
from . import deprecations as deprecations
from . import extract as extract
from . import filterlib as filterlib
import sys as _sys

from . import graphlib as graphlib
from . import helpers as helpers
from . import module as module
from . import nn as nn
from . import proxy_caller as proxy_caller
from . import pytreelib as pytreelib
from . import reprlib as reprlib
from . import rnglib as rnglib
from . import spmd as spmd
from . import statelib as statelib
from . import summary as summary
from . import tracers as tracers
from . import training as training
from . import transforms as transforms
from . import traversals as traversals
from . import variablelib as variablelib
from . import visualization as visualization
from ._containers import Dict as Dict
from ._containers import List as List
from ._containers import Sequential as Sequential
from ._contexts import MergeContext as MergeContext
from ._contexts import SplitContext as SplitContext
from ._contexts import UpdateContext as UpdateContext
from ._contexts import current_update_context as current_update_context
from ._contexts import merge_context as merge_context
from ._contexts import split_context as split_context
from ._contexts import update_context as update_context
from ._extract import NodeStates as NodeStates
from ._extract import from_tree as from_tree
from ._extract import prefix as prefix
from ._extract import to_tree as to_tree
from ._graph_api import GraphState as GraphState
from ._graph_api import PureState as PureState
from ._graph_api import check_pytree as check_pytree
from ._graph_api import dataclass as dataclass
from ._graph_api import has_data as has_data
from ._graph_api import map as map
from ._graph_api import merge as merge
from ._graph_api import set_graph_updates as set_graph_updates
from ._graph_api import unpack as unpack
from ._graph_api import use_eager_sharding as use_eager_sharding
from ._graph_api import using_eager_sharding as using_eager_sharding
from ._graph_api import var_defaults as var_defaults
from ._graph_api import vars_as as vars_as
from ._graph_api import with_vars as with_vars
from ._helpers import TrainState as TrainState
from ._module import M as M
from ._module import Module as Module
from ._module import capture as capture
from ._module import iter_module_children as iter_module_children
from ._module import iter_modules as iter_modules
from ._module import view as view
from ._module import view_info as view_info
from ._module import with_attributes as with_attributes
from ._rngs import with_rngs as with_rngs
from ._spmd import abstract_with_sharding as abstract_with_sharding
from ._spmd import as_abstract as as_abstract
from ._spmd import get_abstract_model as get_abstract_model
from ._summary import tabulate as tabulate
from ._transform_extras import checkify as checkify
from ._transform_extras import make_jaxpr as make_jaxpr
from ._transform_extras import transform_metadata as transform_metadata
from ._visualization import display as display
from .nn import *  # noqa: F403 - the names are nn.__all__, owned by the layers package
from .nn import initializers as initializers
from .training import EMA as EMA
from .training import Metric as Metric
from .training import ModelAndOptimizer as ModelAndOptimizer
from .training import MultiMetric as MultiMetric
from .training import OptArray as OptArray
from .training import Optimizer as Optimizer
from .training import OptState as OptState
from .training import OptVariable as OptVariable
from .training import metrics as metrics
from .training import optimizer as optimizer
from .transforms import Carry as Carry
from .transforms import DiffState as DiffState
from .transforms import StateAxes as StateAxes
from .transforms import StateSharding as StateSharding
from .transforms import cached_partial as cached_partial
from .transforms import cond as cond
from .transforms import custom_vjp as custom_vjp
from .transforms import eval_shape as eval_shape
from .transforms import fori_loop as fori_loop
from .transforms import grad as grad
from .transforms import jit as jit
from .transforms import jit_partial as jit_partial
from .transforms import jvp as jvp
from .transforms import pmap as pmap
from .transforms import remat as remat
from .transforms import scan as scan
from .transforms import shard_map as shard_map
from .transforms import switch as switch
from .transforms import value_and_grad as value_and_grad
from .transforms import vjp as vjp
from .transforms import vmap as vmap
from .transforms import while_loop as while_loop

graph = graphlib  # Flax keeps ``nnx.graph`` as an alias of graphlib
# ... and ``flax.nnx.graph`` is also a module path (``from flax.nnx.graph import ...``).
_sys.modules.setdefault(f"{__name__}.graph", graphlib)
object = pytreelib  # noqa: A001 - Flax's alias of pytreelib (attribute only, no module file)

A = _TypeVar("A")

__version__ = _version("plait-nnx")


def __getattr__(name: str):
    # The Linen<->NNX bridge needs both APIs, so it is its own distribution, plait-bridge
    # (import plait.bridge), which depends on plait-nnx and plait-linen. nnx refers to it
    # only here, lazily, when ``nnx.bridge`` / ``nnx.wrappers`` is accessed.
    if name in ("bridge", "wrappers"):
        try:
            from plait import bridge as bridge_module
        except ImportError as error:
            raise ImportError(
                f"nnx.{name} (the Linen<->NNX bridge) is plait.bridge, in the distribution "
                "plait-bridge, which is not installed.\nFix: install plait-bridge and use "
                "`from plait import bridge` (nnx.bridge then works too)."
            ) from error
        return bridge_module.wrappers if name == "wrappers" else bridge_module
    raise AttributeError(f"module 'plait.nnx' has no attribute {name!r}")
