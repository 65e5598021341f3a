"""Single-file msgpack export / import (core serialization, never pickle)."""

import collections
import os

import jax.numpy as jnp
import numpy as np
import pytest
from plait import checkpoint

Stats = collections.namedtuple("Stats", "count total")


def test_round_trip(tmp_path):
    tree = {
        "w": np.arange(6.0, dtype=np.float32).reshape(2, 3),
        "stats": Stats(3, np.ones(2)),
        "tag": "x",
    }
    path = checkpoint.export_msgpack(tmp_path / "model.msgpack", tree)
    target = {"w": np.zeros((2, 3), np.float32), "stats": Stats(0, np.zeros(2)), "tag": ""}
    restored = checkpoint.import_msgpack(path, target)
    np.testing.assert_array_equal(restored["w"], tree["w"])
    assert restored["stats"].count == 3 and restored["tag"] == "x"


def test_export_replaces_atomically(tmp_path, monkeypatch):
    path = tmp_path / "model.msgpack"
    checkpoint.export_msgpack(path, {"w": np.ones(2)})
    before = path.read_bytes()

    def broken(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.export_msgpack(path, {"w": np.zeros(2)})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.msgpack"]  # the temporary file is cleaned up


def test_corrupt_file_is_named(tmp_path):
    path = tmp_path / "model.msgpack"
    checkpoint.export_msgpack(path, {"w": jnp.ones(100)})
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(
        checkpoint.CorruptCheckpointError, match=r"model.msgpack: not a readable msgpack"
    ):
        checkpoint.import_msgpack(path, {"w": np.zeros(100)})


def test_mismatch_and_missing_file(tmp_path):
    path = checkpoint.export_msgpack(tmp_path / "m.msgpack", {"w": np.ones(2)})
    with pytest.raises(
        checkpoint.CheckpointMismatchError, match=r"m.msgpack does not match the restore target"
    ):
        checkpoint.import_msgpack(path, {"w": np.zeros(3)})
    with pytest.raises(checkpoint.IncompleteCheckpointError, match="the file does not exist"):
        checkpoint.import_msgpack(tmp_path / "none.msgpack", {"w": np.zeros(2)})


def test_state_of_variables(tmp_path):
    from plait.core import BatchStat, Param, State

    state = State(
        {
            "dense": {"kernel": Param(np.ones((2, 2), np.float32))},
            "bn": {"mean": BatchStat(np.zeros(2))},
        }
    )
    path = checkpoint.export_msgpack(tmp_path / "s.msgpack", state)
    target = State(
        {
            "dense": {"kernel": Param(np.zeros((2, 2), np.float32))},
            "bn": {"mean": BatchStat(np.ones(2))},
        }
    )
    restored = checkpoint.import_msgpack(path, target)
    assert type(restored["bn"]["mean"]) is BatchStat
    np.testing.assert_array_equal(restored["dense"]["kernel"].get_value(), np.ones((2, 2)))
    np.testing.assert_array_equal(restored["bn"]["mean"].get_value(), np.zeros(2))
