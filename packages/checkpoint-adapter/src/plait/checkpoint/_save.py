"""Saving one checkpoint: prepare the directory, write the arrays, commit.

``save`` is the synchronous path; ``CheckpointManager`` uses the same three steps with
an asynchronous Orbax checkpointer and runs :meth:`PendingSave.commit` in the
background. See ``_layout.py`` for why the marker written last makes saves atomic.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Mapping
from typing import Any

import jax
import orbax.checkpoint as ocp

from . import _layout, _orbax
from ._errors import CheckpointError, CheckpointExistsError, UnsupportedTreeError
from ._tree import encode

__all__ = ["PendingSave", "save", "start_save"]

# What an interrupted save can leave behind in a checkpoint directory.
_OWN_ENTRIES = (_layout.STATE, _layout.MARKER)


def _json_checked(name: str, value: Any) -> Any:
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as err:
        raise UnsupportedTreeError(
            f"{name} must be JSON-serializable (dicts with str keys, lists, str, numbers, bool, "
            f"None): {err}.\nFix: convert arrays with .tolist() or float(), and objects to dicts."
        ) from err


def _is_own_leftover(name: str) -> bool:
    return any(name == own or name.startswith(own + ".") for own in _OWN_ENTRIES)


def _prepare_destination(directory: str, force: bool) -> None:
    """Makes ``directory`` an empty directory, or raises; every process calls this."""
    if _layout.is_complete(directory) and not force:
        raise CheckpointExistsError(directory)
    if os.path.exists(directory):
        if not os.path.isdir(directory):
            raise CheckpointError(f"Cannot save a checkpoint to {directory}: it is a file.")
        foreign = [name for name in os.listdir(directory) if not _is_own_leftover(name)]
        if foreign:
            raise CheckpointError(
                f"Cannot save a checkpoint to {directory}: the directory holds files that are "
                f"not part of a plait checkpoint ({sorted(foreign)[:5]}), so it is left alone.\n"
                "Fix: save into a new or empty directory."
            )
    _orbax.barrier("prepare_check")
    if _orbax.is_primary():
        if os.path.exists(directory):
            _layout.delete_checkpoint(directory)  # an interrupted save, or force=True
        os.makedirs(directory, exist_ok=True)
    _orbax.barrier("prepare_done")


@dataclasses.dataclass
class PendingSave:
    """A save whose arrays are being written; :meth:`commit` finishes it."""

    directory: str
    record: dict[str, Any]
    checkpointer: ocp.AbstractCheckpointer | None

    def commit(self) -> None:
        """Waits for the array files, then (primary process) writes manifest and marker."""
        if self.checkpointer is not None and hasattr(self.checkpointer, "wait_until_finished"):
            self.checkpointer.wait_until_finished()
        if _orbax.is_primary():
            record = dict(self.record, files=_layout.file_manifest(self.directory))
            _layout.write_marker(self.directory, record)


def start_save(
    directory: str,
    tree: Any,
    *,
    checkpointer: ocp.AbstractCheckpointer,
    metadata: Mapping[str, Any] | None = None,
    step: int | None = None,
    metrics: Mapping[str, Any] | None = None,
    force: bool = False,
) -> PendingSave:
    """Validates, prepares the directory and starts writing the arrays."""
    encoded = encode(tree)
    record = {
        "created": time.time(),
        "step": step,
        "metrics": _json_checked("metrics", dict(metrics or {})),
        "metadata": _json_checked("metadata", dict(metadata or {})),
        "tree": encoded.skeleton,
        "process_count": jax.process_count(),
    }
    _prepare_destination(directory, force)
    if encoded.arrays:
        _orbax.write(checkpointer, os.path.join(directory, _layout.STATE), encoded.arrays)
    return PendingSave(directory, record, checkpointer if encoded.arrays else None)


def save(
    directory: str | os.PathLike,
    tree: Any,
    *,
    metadata: Mapping[str, Any] | None = None,
    force: bool = False,
) -> str:
    """Saves a pytree of arrays as one checkpoint directory, atomically.

    ``tree`` may hold JAX arrays (sharded or not, also across processes), NumPy
    arrays, typed PRNG key arrays, Python bool/int/float/str, plait Variables and
    States, and any pytree container (dicts, lists, tuples, namedtuples such as
    optax states, registered nodes). Every process must call ``save`` with its part
    of the same global arrays. The checkpoint is complete (restorable) only once
    this returns; an interrupted save leaves nothing that restore accepts.

    Args:
      directory: the checkpoint directory (created; must be new, empty, or an
        interrupted save's leftovers).
      tree: the pytree to save.
      metadata: a JSON-serializable dict stored with the checkpoint (see
        :func:`read_metadata`).
      force: replace a complete checkpoint already at ``directory``. The old one
        is invalidated first, so an interrupted forced save leaves no checkpoint.

    Returns:
      The absolute checkpoint directory.

    Raises:
      CheckpointExistsError: a complete checkpoint exists and ``force`` is False.
      UnsupportedTreeError: a leaf cannot be saved (its path is named).

    Example:
      >>> import tempfile, os, jax.numpy as jnp
      >>> from plait import checkpoint
      >>> path = os.path.join(tempfile.mkdtemp(), "ckpt")
      >>> _ = checkpoint.save(path, {"w": jnp.ones((2, 3)), "step": 7})
      >>> checkpoint.restore(path)["step"]
      7
    """
    directory = os.path.abspath(os.fspath(directory))
    checkpointer = _orbax.make_checkpointer(asynchronous=False)
    try:
        pending = start_save(
            directory, tree, checkpointer=checkpointer, metadata=metadata, force=force
        )
        pending.commit()
    finally:
        checkpointer.close()
    _orbax.barrier("save_committed")
    return directory
