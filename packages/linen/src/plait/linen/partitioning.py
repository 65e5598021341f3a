"""Legacy logical partitioning API (``param_with_axes``, ``scan_with_axes`` ...).

Import it explicitly, as in Flax: ``from plait.linen import partitioning as nn_partitioning``.
"""

from ._partitioning import ArrayPytree as ArrayPytree
from ._partitioning import AxisMetadata as AxisMetadata
from ._partitioning import CollectionFilter as CollectionFilter
from ._partitioning import LogicalPartitionSpec as LogicalPartitionSpec
from ._partitioning import LogicalRules as LogicalRules
from ._partitioning import PartitionedVariable as PartitionedVariable
from ._partitioning import PartitionSpecPytree as PartitionSpecPytree
from ._partitioning import PRNGSequenceFilter as PRNGSequenceFilter
from ._partitioning import ScanIn as ScanIn
from ._partitioning import ScanOut as ScanOut
from ._partitioning import axis_rules as axis_rules
from ._partitioning import core_remat_static as core_remat_static
from ._partitioning import get_axis_names as get_axis_names
from ._partitioning import get_axis_rules as get_axis_rules
from ._partitioning import logical_to_mesh as logical_to_mesh
from ._partitioning import logical_to_mesh_axes as logical_to_mesh_axes
from ._partitioning import param_with_axes as param_with_axes
from ._partitioning import remat as remat
from ._partitioning import scan_with_axes as scan_with_axes
from ._partitioning import set_axis_rules as set_axis_rules
from ._partitioning import variable_with_axes as variable_with_axes
from ._partitioning import vmap_with_axes as vmap_with_axes
from ._partitioning import with_sharding_constraint as with_sharding_constraint
