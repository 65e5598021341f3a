"""Nothing is ever pickled or unpickled on the save, restore and import paths."""

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from plait import checkpoint
from plait.core import Param, State


@pytest.fixture
def no_pickle(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("pickle was used")

    for name in ("load", "loads", "dump", "dumps", "Unpickler", "Pickler"):
        monkeypatch.setattr(pickle, name, refuse)


def test_round_trips_never_touch_pickle(tmp_path, no_pickle):
    tree = {
        "state": State({"w": Param(jnp.ones((2, 2)))}),
        "keys": jax.random.split(jax.random.key(0), 2),
        "host": np.arange(3, dtype=np.int32),
        "meta": "text",
    }
    checkpoint.save(tmp_path / "c", tree, metadata={"a": 1})
    checkpoint.restore(tmp_path / "c")
    checkpoint.restore(
        tmp_path / "c",
        jax.eval_shape(lambda: {k: v for k, v in tree.items() if k != "meta"}) | {"meta": ""},
    )
    with checkpoint.CheckpointManager(tmp_path / "m", max_to_keep=1) as mngr:
        mngr.save(0, tree)
        mngr.save(1, tree)
        mngr.restore()
    checkpoint.export_msgpack(tmp_path / "f.msgpack", {"w": np.ones(2)})
    checkpoint.import_msgpack(tmp_path / "f.msgpack", {"w": np.zeros(2)})
    writer = ocp.PyTreeCheckpointer()
    writer.save(tmp_path / "flax", {"params": {"w": np.ones(2, np.float32)}})
    checkpoint.load_flax_checkpoint(tmp_path / "flax", {"w": jnp.zeros(2)})
