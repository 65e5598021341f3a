"""The plait.core helpers nnx's containers and RNG helpers need, imported in one place.

``List`` keeps its items under integer keys in the instance dict (so paths read
``('layers', 0, 'kernel')`` as in Flax) and therefore writes that dict directly; it must
then do what ``Object.__setattr__`` does itself: check the trace, convert plain
lists/dicts to tracked ones, and bump the structure epoch (and its pytree registration
freezes static items the way core does). ``backup_keys`` returns core's RNG backup types.
All of these are public plait.core names.
"""

from __future__ import annotations

from plait.core import SplitBackups as SplitBackups
from plait.core import StreamBackup as StreamBackup
from plait.core import bump_structure_epoch as bump_structure_epoch
from plait.core import check_trace as check_trace
from plait.core import freeze_static as freeze
from plait.core import thaw_static as thaw
from plait.core import track as track

__all__ = [
    "SplitBackups",
    "StreamBackup",
    "bump_structure_epoch",
    "check_trace",
    "freeze",
    "thaw",
    "track",
]
