"""Summaries (``nnx.summary``): ``tabulate`` and its row types."""

from ._summary import ArrayRepr as ArrayRepr
from ._summary import CallInfo as CallInfo
from ._summary import SizeBytes as SizeBytes
from ._summary import filter_rng_streams as filter_rng_streams
from ._summary import tabulate as tabulate
