"""The on-disk layout of one checkpoint, its commit marker and its file manifest.

::

    <checkpoint>/
      state/                   arrays: an Orbax PyTree checkpoint (tensorstore, OCDBT)
      plait_checkpoint.json    commit marker: tree description, metadata, file manifest

The save protocol (``_save.py``) is: Orbax writes ``state.orbax-checkpoint-tmp`` and
renames it to ``state`` once every process has finished (its atomic finalization);
then the primary process lists every file under ``state/`` with its size and CRC-32C,
and writes the marker through a temporary file, ``fsync`` and ``os.replace``. The
marker is the last thing written, so a checkpoint is complete exactly when it has a
marker; a save killed at any earlier point leaves a directory without one, which
restore refuses and managers do not list. Deleting goes the other way round: marker
first, then the rest.

Restore checks the files against the manifest before reading them, so a truncated or
altered file is reported by name instead of silently restoring wrong numbers
(tensorstore does not checksum uncompressed chunks).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import zlib
from collections.abc import Callable, Mapping
from typing import Any, Final

import google_crc32c

from ._errors import CorruptCheckpointError, IncompleteCheckpointError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MARKER",
    "STATE",
    "delete_checkpoint",
    "file_manifest",
    "is_complete",
    "read_marker",
    "verify_files",
    "write_marker",
]

FORMAT: Final = "plait.checkpoint"
FORMAT_VERSION: Final = 2
# Version 1 markers (CRC-32 manifests) are still read; nothing else changed.
_READABLE_VERSIONS: Final = (1, 2)
MARKER: Final = "plait_checkpoint.json"
STATE: Final = "state"
_CHUNK: Final = 1 << 22


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Writes ``data`` to ``path`` so that readers see the old file or the whole new one."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = f"{path}.tmp-{os.getpid()}-{time.monotonic_ns()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_dir(directory)


def _file_checksum(path: str, update: Callable[[int, bytes], int]) -> int:
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            crc = update(crc, chunk)
    return crc


def _crc32(path: str) -> int:
    return _file_checksum(path, lambda crc, chunk: zlib.crc32(chunk, crc))


def _crc32c(path: str) -> int:
    return _file_checksum(path, google_crc32c.extend)


# CRC-32C runs on the CPU's CRC instruction (~4x zlib's CRC-32), which keeps the
# manifest pass small next to the write itself. ``checksum`` in the marker names it.
CHECKSUM: Final = "crc32c"
_CHECKSUMS: Final = {"crc32c": ("CRC-32C", _crc32c), "crc32": ("CRC-32", _crc32)}


def file_manifest(directory: str) -> dict[str, list[int]]:
    """``{relative path: [size, crc32c]}`` of every file under ``directory/state``."""
    root = os.path.join(directory, STATE)
    manifest: dict[str, list[int]] = {}
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, directory).replace(os.sep, "/")
            manifest[rel] = [os.path.getsize(full), _crc32c(full)]
    return dict(sorted(manifest.items()))


def verify_files(
    directory: str,
    manifest: Mapping[str, Any],
    *,
    checksums: bool = True,
    algorithm: str = CHECKSUM,
) -> None:
    """Raises CorruptCheckpointError naming the first file that differs from the manifest."""
    label, checksum = _CHECKSUMS[algorithm]
    for rel, expected in manifest.items():
        full = os.path.join(directory, *rel.split("/"))
        try:
            size = os.path.getsize(full)
        except OSError:
            raise CorruptCheckpointError(full, "the file is missing") from None
        want_size, want_crc = int(expected[0]), int(expected[1])
        if size != want_size:
            raise CorruptCheckpointError(
                full, f"size is {size} bytes, the save wrote {want_size} (truncated or altered)"
            )
        if checksums and (found := checksum(full)) != want_crc:
            raise CorruptCheckpointError(
                full, f"{label} {found:#010x} differs from the saved {want_crc:#010x}"
            )


def write_marker(directory: str, record: Mapping[str, Any]) -> None:
    data = json.dumps(
        {"format": FORMAT, "format_version": FORMAT_VERSION, "checksum": CHECKSUM, **record},
        indent=1,
    )
    atomic_write_bytes(os.path.join(directory, MARKER), data.encode())


def is_complete(directory: str) -> bool:
    return os.path.isfile(os.path.join(directory, MARKER))


def read_marker(directory: str) -> dict[str, Any]:
    """The commit marker's content; Incomplete/CorruptCheckpointError if there is none."""
    path = os.path.join(directory, MARKER)
    if not os.path.isdir(directory):
        raise IncompleteCheckpointError(directory, "the directory does not exist")
    if not os.path.isfile(path):
        found = sorted(os.listdir(directory))
        reason = f"it has no commit marker (found {found})"
        if "_METADATA" in found or "_CHECKPOINT_METADATA" in found:
            reason += "; it looks like a plain Orbax checkpoint"
        raise IncompleteCheckpointError(directory, reason)
    try:
        with open(path, "rb") as f:
            record = json.loads(f.read().decode())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise CorruptCheckpointError(path, f"unreadable JSON ({err})") from err
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise CorruptCheckpointError(path, f"not a {FORMAT} commit marker")
    if record.get("format_version") not in _READABLE_VERSIONS:
        raise CorruptCheckpointError(
            path,
            f"format version {record.get('format_version')!r}; this plait.checkpoint reads "
            f"versions {', '.join(map(str, _READABLE_VERSIONS))}",
        )
    record.setdefault("checksum", "crc32")  # version 1 wrote CRC-32 without naming it
    if record["checksum"] not in _CHECKSUMS:
        raise CorruptCheckpointError(
            path, f"unknown checksum {record['checksum']!r} (known: {sorted(_CHECKSUMS)})"
        )
    for field in ("tree", "files"):
        if field not in record:
            raise CorruptCheckpointError(path, f"the marker has no {field!r} field")
    return record


def delete_checkpoint(directory: str) -> None:
    """Invalidates (marker first) and then removes a checkpoint directory."""
    marker = os.path.join(directory, MARKER)
    if os.path.exists(marker):
        os.remove(marker)
        _fsync_dir(directory)
    shutil.rmtree(directory, ignore_errors=True)
