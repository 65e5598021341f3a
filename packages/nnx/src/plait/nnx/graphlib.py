"""The object-graph API (``nnx.graphlib``, alias ``nnx.graph``): split, merge and friends."""

from plait.core import ApplyCaller as ApplyCaller
from plait.core import GraphDef as GraphDef
from plait.core import as_pure as as_pure
from plait.core import cached_partial as cached_partial
from plait.core import call as call
from plait.core import clone as clone
from plait.core import find_duplicates as find_duplicates
from plait.core import flatten as flatten
from plait.core import graphdef as graphdef
from plait.core import is_graph_node as is_graph_node
from plait.core import is_node as is_node
from plait.core import iter_children as iter_children
from plait.core import iter_graph as iter_graph
from plait.core import pop as pop
from plait.core import pure as pure
from plait.core import recursive_map as recursive_map
from plait.core import register_graph_node_type as register_graph_node_type
from plait.core import set_graph_mode as set_graph_mode
from plait.core import set_metadata as set_metadata
from plait.core import split as split
from plait.core import state as state
from plait.core import unflatten as unflatten
from plait.core import update as update
from plait.core import variables as variables

from ._contexts import MergeContext as MergeContext
from ._contexts import SplitContext as SplitContext
from ._contexts import UpdateContext as UpdateContext
from ._contexts import current_update_context as current_update_context
from ._contexts import merge_context as merge_context
from ._contexts import split_context as split_context
from ._contexts import update_context as update_context
from ._graph_api import GraphState as GraphState
from ._graph_api import PureState as PureState
from ._graph_api import map as map  # noqa: A004 - Flax's name
from ._graph_api import merge as merge
from ._graph_api import set_graph_updates as set_graph_updates
from ._graph_api import unpack as unpack
from ._graph_api import vars_as as vars_as
from ._graph_api import with_vars as with_vars
from ._module import iter_module_children as iter_module_children
