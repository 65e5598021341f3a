import json

import jax
import numpy as np
import pytest

from plait.examples.vision import _models, _train, configs
from plait.examples.vision.__main__ import apply_overrides, main


def tiny_digits(**overrides):
    c = configs.digits()
    c.progress = False
    c.per_device_batch_size = 8  # x 8 simulated devices = 64 per step
    c.num_epochs = 2
    c.limit_train_examples = 512
    c.limit_test_examples = 297  # not divisible by 8: exercises the padded last eval batch
    for k, v in overrides.items():
        c[k] = v
    return c


def test_cnn_on_digits_beats_chance_by_far(tmp_path):
    result = _train.train_and_evaluate(tiny_digits(num_epochs=3, limit_train_examples=0), tmp_path)
    assert result["final"]["test_accuracy"] > 0.8  # chance is 0.1
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3]
    assert metrics["devices"] == 8
    png = (tmp_path / "metrics.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_matches_uninterrupted_run(tmp_path):
    config = tiny_digits(num_epochs=2)
    full = _train.train_and_evaluate(config, tmp_path / "full")
    _train.train_and_evaluate(config, tmp_path / "split", stop_after_epochs=1)
    resumed = _train.train_and_evaluate(config, tmp_path / "split", resume=True)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    for a, b in zip(jax.tree.leaves(full["state"]), jax.tree.leaves(resumed["state"])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)
    assert full["final"]["test_accuracy"] == pytest.approx(resumed["final"]["test_accuracy"])


def test_linen_resnet_updates_batch_stats():
    model = _models.linen_resnet18(10)
    x = jax.random.normal(jax.random.key(0), (4, 8, 8, 1))
    params, state = model.init(jax.random.key(1), x)
    logits, new_state = model.apply(params, state, x, True)
    assert logits.shape == (4, 10)
    before, after = jax.tree.leaves(state), jax.tree.leaves(new_state)
    assert any(not np.allclose(a, b) for a, b in zip(before, after))
    _, eval_state = model.apply(params, state, x, False)
    assert all(np.array_equal(a, b) for a, b in zip(before, jax.tree.leaves(eval_state)))


def test_nnx_cnn_matches_object_call():
    from plait import nnx

    model = _models.CNN(10, (8, 8, 1), rngs=nnx.Rngs(params=jax.random.key(3)))
    functional = _models.nnx_cnn(10, (8, 8, 1))
    params, state = functional.init(jax.random.key(3), None)
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 1))
    np.testing.assert_allclose(functional.apply(params, state, x, False)[0], model(x), rtol=1e-5)


def test_config_overrides():
    c = apply_overrides(configs.default(), ["--config.learning_rate=1", "--config.optimizer=sgd"])
    assert c.learning_rate == 1.0 and isinstance(c.learning_rate, float) and c.optimizer == "sgd"
    with pytest.raises(SystemExit, match="no field 'nope'"):
        apply_overrides(configs.default(), ["--config.nope=1"])
    with pytest.raises(ValueError, match="unknown config"):
        configs.get_config("imagenet")


def test_cli_runs_digits(tmp_path, capsys):
    assert main(["--config", "digits", "--workdir", str(tmp_path), "--config.num_epochs=1",
                 "--config.progress=False", "--config.per_device_batch_size=8",
                 "--config.limit_train_examples=256"]) == 0
    assert "final test accuracy" in capsys.readouterr().out


def test_batch_larger_than_dataset_is_explained(tmp_path):
    with pytest.raises(ValueError, match="exceeds the"):
        _train.train_and_evaluate(tiny_digits(per_device_batch_size=1000), tmp_path)
