"""Boxed variable metadata (Flax's ``flax.core.meta``), e.g. ``Partitioned``."""

from ._meta import PARTITION_NAME as PARTITION_NAME
from ._meta import AxisMetadata as AxisMetadata
from ._meta import Partitioned as Partitioned
from ._meta import add_axis as add_axis
from ._meta import get_global_mesh as get_global_mesh
from ._meta import get_partition_spec as get_partition_spec
from ._meta import get_sharding as get_sharding
from ._meta import global_mesh_defined as global_mesh_defined
from ._meta import is_axis_metadata as is_axis_metadata
from ._meta import map_axis_meta as map_axis_meta
from ._meta import remove_axis as remove_axis
from ._meta import replace_boxed as replace_boxed
from ._meta import unbox as unbox
from ._meta import with_partitioning as with_partitioning
