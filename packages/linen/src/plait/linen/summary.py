"""Model summaries (Flax's ``flax.linen.summary``)."""

from ._summary import Row as Row
from ._summary import Table as Table
from ._summary import module_paths as module_paths
from ._summary import tabulate as tabulate
