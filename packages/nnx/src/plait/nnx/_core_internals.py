"""The few private plait.core helpers nnx's containers need, imported in one place.

``List`` keeps its items under integer keys in the instance dict (so paths read
``('layers', 0, 'kernel')`` as in Flax) and therefore writes that dict directly; it must
then do what ``Object.__setattr__`` does itself: check the trace, convert plain
lists/dicts to tracked ones, and bump the structure epoch (and its pytree registration
freezes static items the way core does). ``backup_keys`` returns core's RNG backup types. If plait.core starts exporting
these, import them from ``plait.core`` here.
"""

from __future__ import annotations

from plait.core._graphdef import freeze as freeze
from plait.core._graphdef import thaw as thaw
from plait.core._object import _check_trace as check_trace
from plait.core._object import bump_structure_epoch as bump_structure_epoch
from plait.core._object import track as track
from plait.core._rng import SplitBackups as SplitBackups
from plait.core._rng import StreamBackup as StreamBackup

__all__ = [
    "SplitBackups",
    "StreamBackup",
    "bump_structure_epoch",
    "check_trace",
    "freeze",
    "thaw",
    "track",
]
