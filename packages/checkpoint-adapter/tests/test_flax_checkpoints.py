"""Reading checkpoints in the layouts Flax programs write with Orbax.

The trees are written here with Orbax directly, exactly as Flax code does
(``ocp.StandardCheckpointer().save(path, nnx.state(model))``, or a Linen
``TrainState`` / variables dict through ``PyTreeCheckpointer``).
"""

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from plait import checkpoint
from plait.core import BatchStat, Param, State

RNG = np.random.default_rng(0)
KERNEL = RNG.standard_normal((4, 3)).astype(np.float32)
BIAS = RNG.standard_normal(3).astype(np.float32)
SCALE = RNG.standard_normal(3).astype(np.float32)
SHIFT = RNG.standard_normal(3).astype(np.float32)
MEAN = RNG.standard_normal(3).astype(np.float32)
VAR = RNG.random(3).astype(np.float32)
BLOCK = [RNG.standard_normal((3, 3)).astype(np.float32) for _ in range(2)]


def _write(path, tree):
    writer = ocp.StandardCheckpointer()
    writer.save(path, tree)
    writer.wait_until_finished()
    writer.close()


def _nnx_pure_dict(wrap=lambda x: x):
    return {
        "linear": {"kernel": wrap(KERNEL), "bias": wrap(BIAS)},
        "bn": {"scale": wrap(SCALE), "bias": wrap(SHIFT), "mean": wrap(MEAN), "var": wrap(VAR)},
        "blocks": {0: {"kernel": wrap(BLOCK[0])}, 1: {"kernel": wrap(BLOCK[1])}},
    }


def _nnx_target(sharding=None):
    def z(shape):
        return jax.ShapeDtypeStruct(shape, jnp.float32, sharding=sharding)

    return State(
        {
            "linear": {"kernel": Param(z((4, 3))), "bias": Param(z((3,)))},
            "bn": {
                "scale": Param(z((3,))),
                "bias": Param(z((3,))),
                "mean": BatchStat(z((3,))),
                "var": BatchStat(z((3,))),
            },
            "blocks": {0: {"kernel": Param(z((3, 3)))}, 1: {"kernel": Param(z((3, 3)))}},
        }
    )


def _check_nnx(restored):
    assert isinstance(restored, State)
    assert type(restored["bn"]["mean"]) is BatchStat and type(restored["linear"]["kernel"]) is Param
    np.testing.assert_array_equal(restored["linear"]["kernel"].get_value(), KERNEL)
    np.testing.assert_array_equal(restored["bn"]["var"].get_value(), VAR)
    np.testing.assert_array_equal(restored["bn"]["bias"].get_value(), SHIFT)
    np.testing.assert_array_equal(restored["blocks"][1]["kernel"].get_value(), BLOCK[1])


@pytest.mark.parametrize("layout", ["pure dict", "VariableState {'value': ...}"])
def test_nnx_state_checkpoints(tmp_path, layout):
    wrap = (lambda x: x) if layout == "pure dict" else (lambda x: {"value": x})
    _write(tmp_path / "ckpt", _nnx_pure_dict(wrap))
    _check_nnx(checkpoint.load_flax_checkpoint(tmp_path / "ckpt", _nnx_target()))


def test_nnx_checkpoint_restores_sharded(tmp_path):
    _write(tmp_path / "ckpt", _nnx_pure_dict())
    sharding = NamedSharding(Mesh(np.array(jax.devices()[:3]), ("x",)), P("x"))
    target = _nnx_target()
    target["linear"]["bias"] = Param(jax.ShapeDtypeStruct((3,), jnp.float32, sharding=sharding))
    restored = checkpoint.load_flax_checkpoint(tmp_path / "ckpt", target)
    assert restored["linear"]["bias"].get_value().sharding == sharding
    _check_nnx(restored)


def _linen_variables():
    return {
        "params": {
            "Dense_0": {"kernel": KERNEL, "bias": BIAS},
            "BatchNorm_0": {"scale": SCALE, "bias": SHIFT},
        },
        "batch_stats": {"BatchNorm_0": {"mean": MEAN, "var": VAR}},
    }


LINEN_TO_NNX = [
    checkpoint.rename("^Dense_0/", "linear/"),
    checkpoint.rename("^BatchNorm_0/", "bn/"),
]


def test_linen_variables_into_nnx_state(tmp_path):
    _write(tmp_path / "ckpt", _linen_variables())
    target = _nnx_target()
    del target["blocks"]
    restored = checkpoint.load_flax_checkpoint(tmp_path / "ckpt", target, LINEN_TO_NNX)
    assert type(restored["bn"]["mean"]) is BatchStat
    np.testing.assert_array_equal(restored["bn"]["mean"].get_value(), MEAN)
    np.testing.assert_array_equal(restored["bn"]["scale"].get_value(), SCALE)
    np.testing.assert_array_equal(restored["linear"]["kernel"].get_value(), KERNEL)


def test_linen_collection_must_match_the_nnx_variable_type(tmp_path):
    _write(tmp_path / "ckpt", _linen_variables())
    target = _nnx_target()
    del target["blocks"]
    target["bn"]["mean"] = Param(jax.ShapeDtypeStruct((3,), jnp.float32))
    with pytest.raises(
        checkpoint.CheckpointMismatchError,
        match=r"(?s)bn/mean: expected float32\[3\] \(Param, collection 'params'\) \(target\), found float32\[3\] in collection 'batch_stats'.*Linen collections merged",
    ):
        checkpoint.load_flax_checkpoint(tmp_path / "ckpt", target, LINEN_TO_NNX)


def _train_state(params, xp=np):
    return {
        "step": 10,
        "params": params,
        "opt_state": [{"count": xp.int32(10), "mu": jax.tree.map(xp.zeros_like, params)}, {}],
    }


@pytest.mark.parametrize("nested", [False, True], ids=["params", "params/params"])
def test_linen_train_state_into_params_and_variables_targets(tmp_path, nested):
    params = {"Dense_0": {"kernel": KERNEL, "bias": BIAS}}
    ocp.PyTreeCheckpointer().save(
        tmp_path / "ckpt", _train_state({"params": params} if nested else params)
    )
    raw = {"Dense_0": {"kernel": jnp.zeros((4, 3)), "bias": jnp.zeros(3)}}
    got = checkpoint.load_flax_checkpoint(tmp_path / "ckpt", raw)
    np.testing.assert_array_equal(got["Dense_0"]["kernel"], KERNEL)
    got = checkpoint.load_flax_checkpoint(tmp_path / "ckpt", {"params": raw})
    np.testing.assert_array_equal(got["params"]["Dense_0"]["bias"], BIAS)


def test_whole_train_state_with_python_step(tmp_path):
    params = {"Dense_0": {"kernel": KERNEL, "bias": BIAS}}
    ocp.PyTreeCheckpointer().save(tmp_path / "ckpt", _train_state(params))
    target = jax.eval_shape(lambda: _train_state(jax.tree.map(jnp.asarray, params), jnp))
    got = checkpoint.load_flax_checkpoint(tmp_path / "ckpt", target)
    assert got["step"].dtype == jnp.int32 and int(got["step"]) == 10
    np.testing.assert_array_equal(got["opt_state"][0]["mu"]["Dense_0"]["kernel"], np.zeros((4, 3)))
    as_python = dict(target, step=0)
    assert checkpoint.load_flax_checkpoint(tmp_path / "ckpt", as_python)["step"] == 10


def test_manager_step_directory_with_one_item(tmp_path):
    _write(tmp_path / "100" / "default", _nnx_pure_dict())
    _check_nnx(checkpoint.load_flax_checkpoint(tmp_path / "100", _nnx_target()))


def test_mismatch_names_the_closest_layout(tmp_path):
    _write(tmp_path / "ckpt", _nnx_pure_dict())
    target = _nnx_target()
    target["linear"]["kernel"] = Param(jax.ShapeDtypeStruct((3, 4), jnp.float32))
    with pytest.raises(
        checkpoint.CheckpointMismatchError,
        match=r"(?s)linear/kernel: expected float32\[3,4\].*found float32\[4,3\].*layout assumed: as saved",
    ):
        checkpoint.load_flax_checkpoint(tmp_path / "ckpt", target)
    restored = checkpoint.load_flax_checkpoint(
        tmp_path / "ckpt", target, [checkpoint.transpose("^linear/kernel$")]
    )
    np.testing.assert_array_equal(restored["linear"]["kernel"].get_value(), KERNEL.T)


def test_partial_flax_load(tmp_path):
    _write(tmp_path / "ckpt", _nnx_pure_dict())
    result = checkpoint.load_flax_checkpoint(
        tmp_path / "ckpt",
        {"linear": {"kernel": jnp.zeros((4, 3))}, "new": jnp.zeros(2)},
        partial=True,
    )
    np.testing.assert_array_equal(result.tree["linear"]["kernel"], KERNEL)
    assert result.missing == ("new",) and "bn/mean" in result.unused


def test_unfinished_orbax_save_is_incomplete(tmp_path):
    (tmp_path / "5" / "default.orbax-checkpoint-tmp").mkdir(parents=True)
    with pytest.raises(
        checkpoint.IncompleteCheckpointError, match="unfinished Orbax temporary directory"
    ):
        checkpoint.load_flax_checkpoint(tmp_path / "5", {"w": jnp.zeros(1)})
    with pytest.raises(checkpoint.IncompleteCheckpointError, match="no Orbax PyTree metadata"):
        checkpoint.load_flax_checkpoint(tmp_path, {"w": jnp.zeros(1)})
