"""Single-file export / import with plait.core's msgpack serialization (never pickle).

For small models and for exchanging weights with Flax's ``flax.serialization``: the
bytes are core's ``to_bytes`` (Flax's wire format), written through a temporary
file, ``fsync`` and ``os.replace``, so the file is either the old one or the whole
new one. The whole tree passes through host memory; use :func:`save` for large or
sharded trees.
"""

from __future__ import annotations

import os
from typing import Any

from plait.core import serialization

from ._errors import CheckpointMismatchError, CorruptCheckpointError, IncompleteCheckpointError
from ._layout import atomic_write_bytes

__all__ = ["export_msgpack", "import_msgpack"]


def export_msgpack(path: str | os.PathLike, tree: Any) -> str:
    """Writes ``tree`` to one msgpack file, atomically.

    Args:
      path: the file to write (replaced if it exists).
      tree: any tree core's ``serialization.to_bytes`` accepts (dicts, lists,
        tuples, namedtuples, struct dataclasses, State/Variables, arrays, scalars).

    Returns:
      The absolute path written.

    Example:
      >>> import tempfile, numpy as np
      >>> from plait.checkpoint import export_msgpack, import_msgpack
      >>> path = export_msgpack(tempfile.mkdtemp() + "/model.msgpack", {"w": np.arange(3.0)})
      >>> import_msgpack(path, {"w": np.zeros(3)})
      {'w': array([0., 1., 2.])}
    """
    path = os.path.abspath(os.fspath(path))
    atomic_write_bytes(path, serialization.to_bytes(tree))
    return path


def import_msgpack(path: str | os.PathLike, target: Any) -> Any:
    """Reads a file written by :func:`export_msgpack` (or Flax's ``to_bytes``) into ``target``.

    Raises:
      IncompleteCheckpointError: the file does not exist.
      CorruptCheckpointError: the file is not valid msgpack from ``to_bytes`` (named).
      CheckpointMismatchError: the content does not fit ``target`` (the path is named).
    """
    path = os.path.abspath(os.fspath(path))
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise IncompleteCheckpointError(path, "the file does not exist") from None
    try:
        state = serialization.msgpack_restore(data)
    except serialization.MsgpackDecodeError as err:
        raise CorruptCheckpointError(path, f"not a readable msgpack checkpoint ({err})") from err
    try:
        return serialization.from_state_dict(target, state)
    except serialization.StateDictMismatchError as err:
        raise CheckpointMismatchError(path, note=f"  {err}") from err
