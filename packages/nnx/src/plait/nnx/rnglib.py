"""RNG streams (``nnx.rnglib``): named keys with counters, and graph-wide operations."""

from plait.core import RngCount as RngCount
from plait.core import RngKey as RngKey
from plait.core import Rngs as Rngs
from plait.core import RngState as RngState
from plait.core import RngStream as RngStream
from plait.core import fork_rngs as fork_rngs
from plait.core import reseed as reseed
from plait.core import restore_rngs as restore_rngs
from plait.core import split_rngs as split_rngs

from ._core_internals import SplitBackups as SplitBackups
from ._core_internals import StreamBackup as StreamBackup
from ._rngs import backup_keys as backup_keys
from ._rngs import with_rngs as with_rngs
