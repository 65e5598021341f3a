"""Exception classes of plait.checkpoint.

Every message says what went wrong, where (checkpoint directory or file, and the
entry path inside the tree), expected versus actual, and how to fix it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

__all__ = [
    "CheckpointError",
    "CheckpointExistsError",
    "CheckpointMismatchError",
    "CorruptCheckpointError",
    "IncompleteCheckpointError",
    "UnsupportedTreeError",
]


class CheckpointError(Exception):
    """Base class of every error raised by plait.checkpoint."""


class CheckpointExistsError(CheckpointError, FileExistsError):
    """A complete checkpoint already exists where a save was asked to write."""

    def __init__(self, directory: str):
        self.directory = directory
        super().__init__(
            f"A complete checkpoint already exists at {directory}.\n"
            "Fix: pass force=True to replace it (the old checkpoint is invalidated before "
            "the new one is written), or save to another directory / step."
        )


_MARKER_EXPLANATION: Final = (
    "A checkpoint counts as complete only once its commit marker (plait_checkpoint.json) "
    "has been written, which is the last step of a save; an interrupted save never gets one.\n"
    "Fix: restore an earlier checkpoint (CheckpointManager.latest_step() lists only complete "
    "ones); for a checkpoint written by Flax or Orbax directly, use load_flax_checkpoint()."
)


class IncompleteCheckpointError(CheckpointError):
    """The directory holds no committed checkpoint (an interrupted save, or none at all)."""

    def __init__(self, directory: str, reason: str, explanation: str = _MARKER_EXPLANATION):
        self.directory = directory
        self.reason = reason
        super().__init__(f"No complete checkpoint at {directory}: {reason}.\n{explanation}")


class CorruptCheckpointError(CheckpointError):
    """A file of a committed checkpoint is missing, truncated or altered."""

    def __init__(self, file: str, reason: str):
        self.file = file
        self.reason = reason
        super().__init__(
            f"Corrupt checkpoint file {file}: {reason}.\n"
            "The file no longer matches what the save wrote, so the checkpoint cannot be "
            "trusted. Fix: restore another checkpoint (for a manager: pass an earlier step)."
        )


class UnsupportedTreeError(CheckpointError, TypeError):
    """The tree to save holds something that cannot be written safely."""


_MISMATCH_FIX: Final = (
    "Fix: restore into a target with the checkpoint's structure; pass partial=True to "
    "restore only the entries both have (the others are reported); or pass rules= "
    "(rename / transpose / reshape / cast / split / drop) to adapt the checkpoint's entries."
)


class CheckpointMismatchError(CheckpointError):
    """The checkpoint and the restore target disagree; every offending path is listed.

    Attributes:
      missing: ``(path, expected)`` for target entries the checkpoint lacks.
      unexpected: ``(path, found)`` for checkpoint entries the target lacks.
      mismatched: ``(path, expected, found)`` for entries whose shape, dtype or kind differ.
    """

    def __init__(
        self,
        where: str,
        *,
        missing: Sequence[tuple[str, str]] = (),
        unexpected: Sequence[tuple[str, str]] = (),
        mismatched: Sequence[tuple[str, str, str]] = (),
        note: str = "",
    ):
        self.where = where
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.mismatched = list(mismatched)
        count = len(self.missing) + len(self.unexpected) + len(self.mismatched)
        noun = "problem" if count == 1 else "problems"
        counted = f" ({count} {noun})" if count else ""
        lines = [f"Checkpoint {where} does not match the restore target{counted}:"]
        if self.missing:
            lines.append("  missing from the checkpoint (the target expects them):")
            lines += [f"    {path}: expected {expected}" for path, expected in self.missing]
        if self.unexpected:
            lines.append("  unexpected in the checkpoint (the target has no such entry):")
            lines += [f"    {path}: found {found}" for path, found in self.unexpected]
        if self.mismatched:
            lines.append("  shape, dtype or kind differs:")
            lines += [
                f"    {path}: expected {expected} (target), found {found} (checkpoint)"
                for path, expected, found in self.mismatched
            ]
        if note:
            lines.append(note)
        lines.append(_MISMATCH_FIX)
        super().__init__("\n".join(lines))
