"""Strict matching (one error listing every path), partial restores, and adapter rules."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from plait import checkpoint
from plait.core import BatchStat, Param, State


@pytest.fixture
def saved(tmp_path):
    tree = {
        "dense": {"kernel": jnp.arange(6.0).reshape(2, 3), "bias": jnp.ones(3)},
        "norm": {"scale": jnp.full(3, 2.0)},
        "step": jnp.int32(4),
    }
    checkpoint.save(tmp_path / "c", tree)
    return tmp_path / "c", tree


def test_every_problem_is_listed_in_one_error(saved):
    path, _ = saved
    target = {
        "dense": {"kernel": jnp.zeros((3, 2)), "bias": jnp.zeros(3, jnp.float16)},
        "step": jnp.int32(0),
        "extra": {"w": jnp.zeros(5)},
    }
    with pytest.raises(checkpoint.CheckpointMismatchError) as info:
        checkpoint.restore(path, target)
    err = info.value
    assert err.missing == [("extra/w", "float32[5]")]
    assert err.unexpected == [("norm/scale", "float32[3]")]
    assert err.mismatched == [
        ("dense/bias", "float16[3]", "float32[3]"),
        ("dense/kernel", "float32[3,2]", "float32[2,3]"),
    ]
    message = str(err)
    assert "(4 problems)" in message
    assert (
        "dense/kernel: expected float32[3,2] (target), found float32[2,3] (checkpoint)" in message
    )
    assert "partial=True" in message


def test_typed_key_versus_raw_array_is_a_kind_mismatch(tmp_path):
    checkpoint.save(tmp_path / "c", {"rng": jax.random.key(0)})
    with pytest.raises(
        checkpoint.CheckpointMismatchError,
        match=r"rng: expected uint32\[2\] \(target\), found key<fry>\[\]",
    ):
        checkpoint.restore(tmp_path / "c", {"rng": jnp.zeros(2, jnp.uint32)})


def test_partial_restore_reports_what_was_left(saved):
    path, tree = saved
    target = {
        "dense": {"kernel": jax.ShapeDtypeStruct((2, 3), jnp.float32)},
        "head": {"w": jnp.zeros(2)},
    }
    result = checkpoint.restore(path, target, partial=True)
    assert isinstance(result, checkpoint.PartialRestore)
    np.testing.assert_array_equal(result.tree["dense"]["kernel"], tree["dense"]["kernel"])
    np.testing.assert_array_equal(result.tree["head"]["w"], np.zeros(2))  # left as given
    assert result.restored == ("dense/kernel",)
    assert result.missing == ("head/w",)
    assert set(result.unused) == {"dense/bias", "norm/scale", "step"}


def test_partial_restore_still_refuses_wrong_shapes(saved):
    path, _ = saved
    with pytest.raises(
        checkpoint.CheckpointMismatchError, match=r"dense/bias: expected float32\[4\]"
    ) as info:
        checkpoint.restore(path, {"dense": {"bias": jnp.zeros(4)}}, partial=True)
    assert info.value.missing == [] and info.value.unexpected == []


def test_variable_collection_mismatch_is_reported(tmp_path):
    checkpoint.save(tmp_path / "c", State({"bn": {"mean": BatchStat(jnp.zeros(2))}}))
    with pytest.raises(
        checkpoint.CheckpointMismatchError,
        match=r"bn/mean: expected float32\[2\] \(Param, collection 'params'\) \(target\), found float32\[2\] in collection 'batch_stats'",
    ):
        checkpoint.restore(tmp_path / "c", State({"bn": {"mean": Param(jnp.zeros(2))}}))


def test_rules_rename_transpose_reshape_cast_drop(saved):
    path, tree = saved
    target = {
        "linear": {"w": jnp.zeros((3, 2)), "b": jnp.zeros((1, 3), jnp.bfloat16)},
        "norm": {"scale": jnp.zeros(3)},
    }
    rules = [
        checkpoint.rename(r"^dense/", "linear/"),
        checkpoint.rename(r"/kernel$", "/w"),
        checkpoint.transpose(r"^linear/w$"),
        checkpoint.rename(r"/bias$", "/b"),
        checkpoint.reshape(r"^linear/b$", (1, 3)),
        checkpoint.cast(r"^linear/b$", jnp.bfloat16),
        checkpoint.drop(r"^step$"),
    ]
    restored = checkpoint.restore(path, target, rules=rules)
    np.testing.assert_array_equal(restored["linear"]["w"], np.asarray(tree["dense"]["kernel"]).T)
    assert restored["linear"]["b"].dtype == jnp.bfloat16 and restored["linear"]["b"].shape == (1, 3)
    np.testing.assert_array_equal(restored["norm"]["scale"], tree["norm"]["scale"])


def test_rule_results_are_shape_checked_before_reading(saved):
    path, _ = saved
    with pytest.raises(
        checkpoint.CheckpointMismatchError,
        match=r"dense/kernel: expected float32\[2,3\] \(target\), found float32\[3,2\] after transpose",
    ):
        checkpoint.restore(
            path,
            {"dense": {"kernel": jnp.zeros((2, 3))}},
            partial=True,
            rules=[checkpoint.transpose("kernel")],
        )


def test_a_failing_transform_names_the_entry(saved):
    path, _ = saved
    with pytest.raises(
        checkpoint.CheckpointMismatchError, match=r"dense/kernel: expected a transform that accepts"
    ):
        checkpoint.restore(path, {}, partial=True, rules=[checkpoint.reshape("kernel", (7,))])


def test_renames_that_collide_are_refused(saved):
    path, _ = saved
    with pytest.raises(
        checkpoint.CheckpointMismatchError,
        match=r"several checkpoint entries to one path:\n    dense/kernel and dense/bias both become dense/x",
    ):
        checkpoint.restore(
            path, {}, partial=True, rules=[checkpoint.rename(r"(kernel|bias)$", "x")]
        )


def test_rules_need_a_target(saved):
    path, _ = saved
    with pytest.raises(TypeError, match="rules= need a target"):
        checkpoint.restore(path, rules=[checkpoint.drop("step")])


def test_key_rule_renames_with_groups():
    rule = checkpoint.KeyRule(r"^layers_(\d+)/", replacement=r"layers/\1/")
    assert rule.rename_path("layers_12/kernel") == "layers/12/kernel"
    with pytest.raises(Exception, match="unterminated|missing"):
        checkpoint.KeyRule("(")


def test_split_turns_one_entry_into_several(tmp_path):
    fused = np.arange(3 * 2 * 4, dtype=np.float32).reshape(3, 2, 4)  # (q|k|v, heads, dim)
    checkpoint.save(tmp_path / "c", {"attn": {"qkv": {"w": jnp.asarray(fused)}}, "b": jnp.ones(2)})
    rules = [
        checkpoint.split(r"attn/qkv/w$", {"attn/q": lambda w: w[0], "attn/kv": lambda w: w[1:]}),
        checkpoint.transpose(r"attn/q$", (1, 0)),  # later rules apply to each part
    ]
    target = jax.eval_shape(lambda: {"attn": {"q": jnp.zeros((4, 2)), "kv": jnp.zeros((2, 2, 4))},
                                     "b": jnp.zeros(2)})
    restored = checkpoint.restore(tmp_path / "c", target, rules=rules)
    np.testing.assert_array_equal(restored["attn"]["q"], fused[0].T)
    np.testing.assert_array_equal(restored["attn"]["kv"], fused[1:])
    np.testing.assert_array_equal(restored["b"], np.ones(2))


def test_split_parts_are_shape_checked_and_named(tmp_path):
    checkpoint.save(tmp_path / "c", {"qkv": jnp.zeros((3, 4))})
    rules = [checkpoint.split(r"^qkv$", {"q": lambda w: w[0], "kv": lambda w: w[1:]})]
    target = {"q": jnp.zeros(4), "kv": jnp.zeros((3, 4))}
    with pytest.raises(checkpoint.CheckpointMismatchError, match=r"kv: expected float32\[3,4\].*found float32\[2,4\] after split"):
        checkpoint.restore(tmp_path / "c", target, rules=rules)


def test_split_rule_validation():
    with pytest.raises(ValueError, match=r"at least one part"):
        checkpoint.split("x", {})
    with pytest.raises(ValueError, match=r"cannot be combined"):
        checkpoint.KeyRule("x", replacement="y", parts=(("z", lambda w: w),))
