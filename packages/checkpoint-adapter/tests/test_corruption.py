"""Damaged or unfinished checkpoints are refused with an error that names the file."""

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest
from plait import checkpoint


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "c"
    checkpoint.save(path, {"w": jnp.arange(50_000.0), "b": jnp.ones(3)})
    return path


def _largest_data_file(path):
    files = [os.path.join(d, f) for d, _, fs in os.walk(path / "state") for f in fs]
    return max(files, key=os.path.getsize)


def test_flipped_bytes_are_detected_by_checksum(saved):
    data = _largest_data_file(saved)
    with open(data, "r+b") as f:
        f.seek(os.path.getsize(data) // 2)
        f.write(b"\x00\xff\x00\xff")
    with pytest.raises(
        checkpoint.CorruptCheckpointError, match=rf"{os.path.basename(data)}: CRC-32C .* differs"
    ):
        checkpoint.restore(saved)


def _as_version_1(path):
    """Rewrites the marker as plait.checkpoint 0.1.0 wrote it: format 1, zlib CRC-32."""
    import zlib

    marker = path / "plait_checkpoint.json"
    record = json.loads(marker.read_text())
    del record["checksum"]
    record["format_version"] = 1
    for rel, entry in record["files"].items():
        entry[1] = zlib.crc32((path / rel).read_bytes())
    marker.write_text(json.dumps(record))


def test_version_1_checkpoints_restore_and_verify_with_crc32(saved):
    _as_version_1(saved)
    np.testing.assert_array_equal(checkpoint.restore(saved)["w"], np.arange(50_000.0))
    data = _largest_data_file(saved)
    with open(data, "r+b") as f:
        f.seek(os.path.getsize(data) // 2)
        f.write(b"\x00\xff\x00\xff")
    with pytest.raises(checkpoint.CorruptCheckpointError, match=r": CRC-32 0x.* differs"):
        checkpoint.restore(saved)


def test_unknown_checksum_is_refused(saved):
    marker = saved / "plait_checkpoint.json"
    record = json.loads(marker.read_text())
    record["checksum"] = "md4"
    marker.write_text(json.dumps(record))
    with pytest.raises(checkpoint.CorruptCheckpointError, match=r"unknown checksum 'md4'"):
        checkpoint.restore(saved)


def test_truncated_file_is_detected_by_size(saved):
    data = _largest_data_file(saved)
    with open(data, "r+b") as f:
        f.truncate(100)
    with pytest.raises(
        checkpoint.CorruptCheckpointError, match=rf"{os.path.basename(data)}: size is 100 bytes"
    ):
        checkpoint.restore(saved, verify=False)


def test_missing_file_is_named(saved):
    os.remove(saved / "state" / "manifest.ocdbt")
    with pytest.raises(
        checkpoint.CorruptCheckpointError, match=r"state/manifest.ocdbt: the file is missing"
    ):
        checkpoint.restore(saved)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"format": "plait.checkpoint", "tree": ', r"plait_checkpoint.json: unreadable JSON"),
        (b'{"format": "other"}', r"plait_checkpoint.json: not a plait.checkpoint commit marker"),
        (b'{"format": "plait.checkpoint", "format_version": 99}', r"format version 99"),
        (
            b'{"format": "plait.checkpoint", "format_version": 1, "files": {}, "tree": {"t": "bogus"}}',
            r"plait_checkpoint.json: malformed tree description at <root>",
        ),
    ],
)
def test_damaged_marker_is_named(saved, content, message):
    (saved / "plait_checkpoint.json").write_bytes(content)
    with pytest.raises(checkpoint.CorruptCheckpointError, match=message):
        checkpoint.restore(saved)


def test_marker_naming_an_entry_orbax_lacks(saved):
    marker = saved / "plait_checkpoint.json"
    record = json.loads(marker.read_text())
    record["tree"]["keys"].append("ghost")
    record["tree"]["items"].append({"t": "leaf", "kind": "jax", "shape": [1], "dtype": "float32"})
    marker.write_text(json.dumps(record))
    with pytest.raises(
        checkpoint.CorruptCheckpointError,
        match=r"_METADATA: the entry ghost recorded in the commit marker",
    ):
        checkpoint.restore(saved)


def test_directory_without_marker_is_incomplete(saved):
    os.remove(saved / "plait_checkpoint.json")
    with pytest.raises(checkpoint.IncompleteCheckpointError, match=r"has no commit marker"):
        checkpoint.restore(saved)
    with pytest.raises(checkpoint.IncompleteCheckpointError, match=r"does not exist"):
        checkpoint.restore(saved.parent / "nothing")


def test_plain_orbax_checkpoint_points_to_the_flax_loader(tmp_path):
    import orbax.checkpoint as ocp

    ocp.PyTreeCheckpointer().save(tmp_path / "o", {"w": np.ones(2)})
    with pytest.raises(
        checkpoint.IncompleteCheckpointError,
        match=r"(?s)plain Orbax checkpoint.*load_flax_checkpoint",
    ):
        checkpoint.restore(tmp_path / "o")


def test_overwriting_with_force_invalidates_before_writing(saved, monkeypatch):
    from plait.checkpoint import _orbax

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed mid-save")

    monkeypatch.setattr(_orbax, "write", crash)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(saved, {"w": jnp.zeros(2)}, force=True)
    with pytest.raises(checkpoint.IncompleteCheckpointError, match="has no commit marker"):
        checkpoint.restore(saved)


@pytest.mark.parametrize("name", ["manifest.ocdbt", "_METADATA"])
def test_damaged_metadata_files_are_reported_by_checksum_not_by_their_symptom(saved, name):
    # Orbax and tensorstore parse these files; the checksums are checked before either
    # sees them, so the error names the damaged file instead of a parser's symptom.
    target = saved / "state" / name
    data = bytearray(target.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4] = bytes(b ^ 0xFF for b in data[middle : middle + 4])
    target.write_bytes(bytes(data))
    with pytest.raises(checkpoint.CorruptCheckpointError, match=rf"{name}: CRC-32C .* differs"):
        checkpoint.restore(saved)
