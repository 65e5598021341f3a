"""Logical axis partitioning (Flax's ``flax.linen.spmd``); rules live in plait.core."""

from plait.core import RulesFallback as RulesFallback
from plait.core import get_logical_axis_rules as get_logical_axis_rules
from plait.core import logical_axis_rules as logical_axis_rules
from plait.core import logical_to_mesh as logical_to_mesh
from plait.core import logical_to_mesh_axes as logical_to_mesh_axes
from plait.core import logical_to_mesh_sharding as logical_to_mesh_sharding
from plait.core import set_logical_axis_rules as set_logical_axis_rules
from plait.core import with_logical_constraint as with_logical_constraint

from ._spmd import LogicallyPartitioned as LogicallyPartitioned
from ._spmd import with_logical_partitioning as with_logical_partitioning
