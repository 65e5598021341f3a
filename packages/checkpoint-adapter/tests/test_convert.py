"""Linen variables <-> NNX State layout conversion."""

import jax.numpy as jnp
import numpy as np
import pytest
from plait import checkpoint
from plait.core import BatchStat, Param, State, Variable

F32 = np.float32
VARIABLES = {
    "params": {
        "Dense_0": {"kernel": np.arange(6.0, dtype=F32).reshape(2, 3), "bias": np.ones(3, F32)},
        "BatchNorm_0": {"scale": np.full(3, 2.0, F32), "bias": np.zeros(3, F32)},
    },
    "batch_stats": {"BatchNorm_0": {"mean": np.full(3, 0.5, F32), "var": np.full(3, 4.0, F32)}},
}
NAMES = [checkpoint.rename("^Dense_0", "linear"), checkpoint.rename("^BatchNorm_0", "bn")]
BACK = [checkpoint.rename("^linear", "Dense_0"), checkpoint.rename("^bn", "BatchNorm_0")]


def test_linen_to_nnx_merges_collections_into_typed_variables():
    state = checkpoint.linen_to_nnx(VARIABLES, NAMES)
    assert isinstance(state, State)
    assert sorted(state["bn"]) == ["bias", "mean", "scale", "var"]
    assert type(state["bn"]["mean"]) is BatchStat and type(state["bn"]["scale"]) is Param
    np.testing.assert_array_equal(
        state["linear"]["kernel"].get_value(), VARIABLES["params"]["Dense_0"]["kernel"]
    )
    np.testing.assert_array_equal(state["bn"]["var"].get_value(), np.full(3, 4.0))


def test_round_trip_linen_nnx_linen():
    back = checkpoint.nnx_to_linen(checkpoint.linen_to_nnx(VARIABLES, NAMES), BACK)
    assert back.keys() == VARIABLES.keys()
    for collection, modules in VARIABLES.items():
        for module, leaves in modules.items():
            assert back[collection][module].keys() == leaves.keys()
            for name, value in leaves.items():
                np.testing.assert_array_equal(back[collection][module][name], value)


def test_unknown_collections_and_variable_types_round_trip():
    state = checkpoint.linen_to_nnx(
        {"params": {"w": np.ones(1)}, "counters": {"calls": np.zeros(())}}
    )
    assert type(state["calls"]).__name__ == "Counters" and isinstance(state["calls"], Variable)
    assert checkpoint.nnx_to_linen(state)["counters"]["calls"] == 0

    Mystery = type("Mystery", (Variable,), {})
    variables = checkpoint.nnx_to_linen(State({"m": Mystery(jnp.ones(2)), "plain": jnp.zeros(1)}))
    assert sorted(variables) == ["Mystery", "params"]


def test_transform_rules_apply_during_conversion():
    state = checkpoint.linen_to_nnx(
        VARIABLES, [*NAMES, checkpoint.transpose("^linear/kernel$"), checkpoint.drop("^bn/")]
    )
    assert sorted(state) == ["linear"]
    assert state["linear"]["kernel"].get_value().shape == (3, 2)


def test_colliding_names_are_refused():
    variables = {"params": {"a": {"w": np.ones(1)}}, "batch_stats": {"a": {"w": np.ones(1)}}}
    with pytest.raises(
        checkpoint.CheckpointError, match=r"maps both params/a/w and batch_stats/a/w to a/w"
    ):
        checkpoint.linen_to_nnx(variables)


def test_converted_state_saves_and_restores_into_nnx_target(tmp_path):
    checkpoint.save(tmp_path / "c", checkpoint.linen_to_nnx(VARIABLES, NAMES))
    target = State(
        {
            "linear": {"kernel": Param(jnp.zeros((2, 3))), "bias": Param(jnp.zeros(3))},
            "bn": {
                k: (BatchStat if k in ("mean", "var") else Param)(jnp.zeros(3))
                for k in ("scale", "bias", "mean", "var")
            },
        }
    )
    restored = checkpoint.restore(tmp_path / "c", target)
    np.testing.assert_array_equal(restored["bn"]["mean"].get_value(), np.full(3, 0.5))
