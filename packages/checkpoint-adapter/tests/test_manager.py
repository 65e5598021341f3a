"""CheckpointManager: listing, retention, async saves, exact resume."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from plait import checkpoint
from plait.checkpoint import CheckpointManager


def _tree(step):
    return {"w": jnp.full((2,), float(step))}


@pytest.mark.parametrize("async_save", [True, False])
def test_steps_latest_and_restore(tmp_path, async_save):
    with CheckpointManager(tmp_path, async_save=async_save) as mngr:
        assert mngr.latest_step() is None
        for step in (0, 10, 20):
            mngr.save(step, _tree(step), metadata={"at": step})
        mngr.wait_until_finished()
        assert mngr.all_steps() == [0, 10, 20] and mngr.latest_step() == 20
        np.testing.assert_array_equal(mngr.restore()["w"], np.full(2, 20.0))
        np.testing.assert_array_equal(mngr.restore(10)["w"], np.full(2, 10.0))
        info = mngr.metadata(10)
        assert info.step == 10 and info.metadata == {"at": 10}
    # a new manager on the same directory sees the same steps
    assert CheckpointManager(tmp_path).all_steps() == [0, 10, 20]


def test_restore_waits_for_a_running_save(tmp_path):
    with CheckpointManager(tmp_path) as mngr:
        mngr.save(1, _tree(1))
        np.testing.assert_array_equal(mngr.restore()["w"], np.full(2, 1.0))


def test_empty_manager_restore_is_an_error(tmp_path):
    with CheckpointManager(tmp_path) as mngr:
        with pytest.raises(
            checkpoint.IncompleteCheckpointError, match="no complete checkpoint yet"
        ):
            mngr.restore()


def test_keep_last_n(tmp_path):
    with CheckpointManager(tmp_path, max_to_keep=2) as mngr:
        for step in range(5):
            mngr.save(step, _tree(step))
        mngr.wait_until_finished()
        assert mngr.all_steps() == [3, 4]
    assert sorted(os.listdir(tmp_path)) == ["3", "4"]


@pytest.mark.parametrize(
    ("mode", "max_to_keep", "expected"),
    [
        ("max", None, [2, 4, 5]),  # best two by accuracy (2 and 4) plus the newest
        ("min", None, [0, 3, 5]),
        ("max", 2, [2, 4, 5]),
        ("max", 3, [2, 3, 4, 5]),
    ],
)
def test_keep_best_by_metric(tmp_path, mode, max_to_keep, expected):
    accuracy = [0.1, 0.5, 0.9, 0.2, 0.8, 0.3]
    with CheckpointManager(
        tmp_path, keep_best=2, best_metric="acc", best_mode=mode, max_to_keep=max_to_keep
    ) as mngr:
        for step, acc in enumerate(accuracy):
            mngr.save(step, _tree(step), metrics={"acc": acc})
        mngr.wait_until_finished()
        assert mngr.all_steps() == expected
        assert mngr.best_step() == (2 if mode == "max" else 0)


def test_steps_without_the_metric_are_kept_only_by_recency(tmp_path):
    with CheckpointManager(tmp_path, keep_best=1, best_metric="acc", max_to_keep=1) as mngr:
        mngr.save(0, _tree(0), metrics={"acc": 0.9})
        mngr.save(1, _tree(1))
        mngr.save(2, _tree(2), metrics={"acc": float("nan")})
        mngr.save(3, _tree(3))
        mngr.wait_until_finished()
        assert mngr.all_steps() == [0, 3]


def test_async_save_copies_arrays_before_returning(tmp_path):
    # Training may donate or delete its buffers right after save() returns.
    tree = {"w": jnp.arange(1000.0), "k": jax.random.key(1)}
    expected = np.arange(1000.0)
    with CheckpointManager(tmp_path) as mngr:
        mngr.save(0, tree)
        for leaf in jax.tree.leaves(tree):
            leaf.delete()
        mngr.wait_until_finished()
        np.testing.assert_array_equal(mngr.restore(0)["w"], expected)


def test_background_failure_is_raised_on_the_next_call(tmp_path, monkeypatch):
    from plait.checkpoint import _layout

    def broken(directory, record):
        raise OSError("disk full")

    with CheckpointManager(tmp_path) as mngr:
        monkeypatch.setattr(_layout, "write_marker", broken)
        mngr.save(0, _tree(0))
        with pytest.raises(
            checkpoint.CheckpointError,
            match="background checkpoint save .* failed: OSError\\('disk full'\\)",
        ):
            mngr.wait_until_finished()
        monkeypatch.undo()
        assert mngr.all_steps() == []  # never committed, never listed
        mngr.save(0, _tree(0))  # the leftover is replaced
        mngr.wait_until_finished()
        assert mngr.all_steps() == [0]


def test_same_step_needs_force_and_closed_manager_refuses(tmp_path):
    mngr = CheckpointManager(tmp_path, async_save=False)
    mngr.save(3, _tree(3))
    with pytest.raises(checkpoint.CheckpointExistsError, match="already exists"):
        mngr.save(3, _tree(4))
    mngr.save(3, _tree(4), force=True)
    np.testing.assert_array_equal(mngr.restore(3)["w"], np.full(2, 4.0))
    mngr.delete(3)
    assert mngr.all_steps() == []
    mngr.close()
    with pytest.raises(checkpoint.CheckpointError, match="is closed"):
        mngr.save(4, _tree(4))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_to_keep": 0}, "max_to_keep must be a positive int"),
        ({"keep_best": 2}, "keep_best needs best_metric"),
        ({"best_mode": "up"}, "best_mode must be 'max' or 'min'"),
    ],
)
def test_invalid_options(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        CheckpointManager(tmp_path, **kwargs)


def test_invalid_step_and_metric(tmp_path):
    with CheckpointManager(tmp_path, keep_best=1, best_metric="acc") as mngr:
        with pytest.raises(ValueError, match="step must be a non-negative int"):
            mngr.save(-1, _tree(0))
        with pytest.raises(TypeError, match=r"metrics\['acc'\] must be a Python number"):
            mngr.save(1, _tree(0), metrics={"acc": jnp.float32(0.5)})


# ---------------------------------------------------------------------------------------
# exact resume


def _loss(params, batch, key):
    noise = jax.random.normal(key, batch.shape) * 0.01
    prediction = (batch + noise) @ params["w"] + params["b"][None, :]
    return jnp.mean(prediction**2)


TX = optax.adam(1e-2)


@jax.jit
def _train_step(state):
    key, step_key, data_key = jax.random.split(state["rng"], 3)
    batch = jax.random.normal(data_key, (4, 3))
    grads = jax.grad(_loss)(state["params"], batch, step_key)
    updates, opt_state = TX.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    return {"params": params, "opt_state": opt_state, "rng": key, "step": state["step"] + 1}


def _initial_state():
    params = {"w": jnp.ones((3, 2)) * 0.5, "b": jnp.zeros(2)}
    return {
        "params": params,
        "opt_state": TX.init(params),
        "rng": jax.random.key(42),
        "step": jnp.int32(0),
    }


def test_resume_reproduces_an_uninterrupted_run_exactly(tmp_path):
    state = _initial_state()
    for _ in range(6):
        state = _train_step(state)
    uninterrupted = state

    state = _initial_state()
    with CheckpointManager(tmp_path, max_to_keep=1) as mngr:
        for _ in range(3):
            state = _train_step(state)
            mngr.save(int(state["step"]), state, metadata={"config": {"lr": 1e-2}})
    del state

    with CheckpointManager(tmp_path) as mngr:  # a fresh "process"
        assert mngr.latest_step() == 3
        abstract = jax.eval_shape(_initial_state)
        state = mngr.restore(target=abstract)
        assert mngr.metadata().metadata == {"config": {"lr": 1e-2}}
    assert jax.tree.structure(state) == jax.tree.structure(uninterrupted)
    for _ in range(3):
        state = _train_step(state)
    assert int(state["step"]) == 6
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(uninterrupted), strict=True):
        if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
