"""Training: loss goes down, resume equals an uninterrupted run, sharded equals unsharded."""

import json

import jax
import numpy as np
import pytest
from plait.examples.gemma import build_train_functions, make_mesh, train
from plait.examples.gemma._pipeline import batch_at
from plait.examples.gemma._steps import place_batch


def _params(state):
    return jax.tree.map(np.asarray, jax.tree.leaves(state["model"]))


QUIET = {"progress": False, "log": lambda _: None}


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory, micro_train_config, texts):
    """Eight uninterrupted steps of the micro model on one device (shared by two tests)."""
    config = micro_train_config
    workdir = tmp_path_factory.mktemp("whole")
    return config, workdir, train(config, workdir, documents=texts, devices=jax.devices()[:1], **QUIET)


def test_a_few_steps_reduce_the_loss(whole_run):
    _, workdir, result = whole_run
    losses = [row["train_loss"] for row in result.history if "train_loss" in row]
    assert len(losses) == 8
    assert np.mean(losses[-2:]) < losses[0] - 1.0
    metrics = json.loads((workdir / "metrics.json").read_text())
    val = [row["val_loss"] for row in metrics["history"] if "val_loss" in row]
    assert len(val) == 2 and val[1] < val[0]
    assert metrics["summary"]["steps"] == 8 and metrics["summary"]["tokens_per_second"] > 0
    assert (workdir / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_resume_equals_uninterrupted(whole_run, texts, tmp_path):
    config, _, whole = whole_run
    quiet = {"documents": texts, "devices": jax.devices()[:1], **QUIET}
    first = train(config, tmp_path, until_step=4, **quiet)
    assert int(first.state["optimizer"]["step"].value) == 4
    with pytest.raises(ValueError, match="--resume"):
        train(config, tmp_path, **quiet)
    second = train(config, tmp_path, resume=True, **quiet)
    assert int(second.state["optimizer"]["step"].value) == 8
    for a, b in zip(_params(whole.state), _params(second.state), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    history = json.loads((tmp_path / "metrics.json").read_text())["history"]
    resumed_losses = [row["train_loss"] for row in history if "train_loss" in row]
    assert [row["step"] for row in history if "train_loss" in row] == list(range(1, 9))
    assert resumed_losses == pytest.approx([r["train_loss"] for r in whole.history if "train_loss" in r], rel=1e-6)


def _run_steps(config, mesh, windows, steps=3):
    functions = build_train_functions(config, mesh)
    state = functions.init()
    losses = []
    for step in range(steps):
        batch = place_batch(batch_at(windows, config.batch_size, step, seed=0), functions.batch_sharding)
        state, metrics = functions.train_step(state, batch)
        losses.append(float(metrics["loss"]))
    return losses, state


WINDOWS = np.random.default_rng(0).integers(3, 259, (32, 17)).astype(np.int32)


@pytest.fixture(scope="module")
def one_device_losses(micro_train_config):
    return _run_steps(micro_train_config, make_mesh(devices=jax.devices()[:1]), WINDOWS)[0]


@pytest.mark.parametrize(("data", "fsdp", "tensor"), [(8, 1, 1), (4, 2, 1), (2, 1, 4)])
def test_sharded_training_matches_one_device(micro_train_config, one_device_losses, data, fsdp, tensor):
    assert len(jax.devices()) == 8, "conftest sets 8 simulated CPU devices"
    losses, state = _run_steps(micro_train_config, make_mesh(data, fsdp, tensor), WINDOWS)
    np.testing.assert_allclose(losses, one_device_losses, rtol=2e-5)

    model = state["model"]
    q_proj = model["layers"][0]["attn"]["q_proj"].value
    embedding = model["embedder"]["embedding"].value
    # Declared ('embed', 'heads', 'head_dim'), mapped by LOGICAL_AXIS_RULES.
    assert tuple(q_proj.sharding.spec) == ("fsdp", "tensor", None)
    assert q_proj.addressable_shards[0].data.shape == (32 // fsdp, 4 // tensor, 8)
    assert embedding.addressable_shards[0].data.shape == (264 // tensor, 32 // fsdp)
    # One key/value head cannot be split 4 ways: that dimension is replicated instead.
    kv = model["layers"][0]["attn"]["kv_proj"].value
    assert kv.addressable_shards[0].data.shape == (2, 32 // fsdp, 1, 8)
    # Adam's moments live where their parameters live.
    moments = [
        leaf for path, leaf in jax.tree_util.tree_flatten_with_path(state["optimizer"])[0]
        if "q_proj" in jax.tree_util.keystr(path)
    ]
    assert moments and all(m.sharding.spec == q_proj.sharding.spec for m in moments)
    assert dict(q_proj.sharding.mesh.shape) == {"data": data, "fsdp": fsdp, "tensor": tensor}
    assert tuple(kv.sharding.spec) == (None, "fsdp", "tensor" if tensor == 1 else None, None)
