"""Sharding helpers (``nnx.spmd``): partition metadata, specs, abstract models."""

from plait.core import PARTITION_NAME as PARTITION_NAME
from plait.core import add_axis as add_axis
from plait.core import get_named_sharding as get_named_sharding
from plait.core import get_partition_spec as get_partition_spec
from plait.core import get_var_pspec as get_var_pspec
from plait.core import logical_axis_rules as logical_axis_rules
from plait.core import remove_axis as remove_axis
from plait.core import with_partitioning as with_partitioning
from plait.core import with_sharding_constraint as with_sharding_constraint

from ._spmd import abstract_with_sharding as abstract_with_sharding
from ._spmd import as_abstract as as_abstract
from ._spmd import get_abstract_model as get_abstract_model
