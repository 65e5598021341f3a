"""Round trips through save / restore, with and without a target."""

import collections
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from plait import checkpoint
from plait.core import BatchStat, Param, State, Variable

Pair = collections.namedtuple("Pair", "first second")


def _same(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert type(x) is type(y)
        if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            assert x.dtype == y.dtype
            np.testing.assert_array_equal(jax.random.key_data(x), jax.random.key_data(y))
        elif hasattr(x, "dtype"):
            assert x.dtype == y.dtype and x.shape == y.shape
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        else:
            assert x == y


def test_round_trip_without_target_keeps_containers_and_leaf_kinds(tmp_path):
    tree = {
        "w": jnp.arange(6.0).reshape(2, 3),
        "half": jnp.ones(4, jnp.bfloat16),
        "host": np.arange(5, dtype=np.int16),
        "np_scalar": np.float32(2.5),
        "keys": jax.random.split(jax.random.key(3), 3),
        "rbg_key": jax.random.key(3, impl="rbg"),
        "step": 7,
        "lr": 0.25,
        "done": False,
        "name": "run-1",
        "nested": [Pair(jnp.zeros(2), (jnp.int32(4), None)), {"x": jnp.ones(())}],
    }
    path = checkpoint.save(tmp_path / "c", tree)
    assert path == str(tmp_path / "c")
    restored = checkpoint.restore(path)
    assert type(restored["nested"][0]).__name__ == "Pair"
    assert restored["nested"][0]._fields == ("first", "second")
    assert restored["nested"][0].second[1] is None
    # Namedtuple classes are rebuilt from the recorded fields; compare by value.
    restored["nested"][0] = Pair(*restored["nested"][0])
    _same(restored, tree)


def test_single_array_root(tmp_path):
    checkpoint.save(tmp_path / "c", jnp.arange(3))
    np.testing.assert_array_equal(checkpoint.restore(tmp_path / "c"), np.arange(3))


def test_tree_without_arrays(tmp_path):
    checkpoint.save(tmp_path / "c", {"step": 3, "tag": "x"})
    assert not os.path.exists(tmp_path / "c" / "state")
    assert checkpoint.restore(tmp_path / "c") == {"step": 3, "tag": "x"}


def test_optax_state_restores_into_its_own_types(tmp_path):
    params = {"w": jnp.arange(4.0), "b": jnp.ones(())}
    tx = optax.adam(1e-2)
    opt_state = tx.init(params)
    grads = jax.tree.map(jnp.ones_like, params)
    _, opt_state = tx.update(grads, opt_state, params)
    checkpoint.save(tmp_path / "c", {"params": params, "opt_state": opt_state})
    target = jax.eval_shape(lambda: {"params": params, "opt_state": tx.init(params)})
    restored = checkpoint.restore(tmp_path / "c", target)
    assert isinstance(restored["opt_state"][0], optax.ScaleByAdamState)
    _same(restored["opt_state"], opt_state)
    _same(restored["params"], params)


def test_state_with_variables_round_trips_types_and_metadata(tmp_path):
    Count = type("Count", (Variable,), {})
    state = State(
        {
            "linear": {
                "kernel": Param(jnp.ones((2, 3)), sharding_names=("in", "out")),
                "bias": Param(jnp.zeros(3)),
            },
            "bn": {"mean": BatchStat(jnp.zeros(3))},
            "calls": Count(jnp.int32(5)),
        }
    )
    checkpoint.save(tmp_path / "c", state)
    restored = checkpoint.restore(tmp_path / "c")
    assert isinstance(restored, State)
    assert type(restored["linear"]["kernel"]) is Param
    assert restored["linear"]["kernel"].sharding_names == ("in", "out")
    assert type(restored["bn"]["mean"]) is BatchStat
    assert type(restored["calls"]).__name__ == "Count"
    np.testing.assert_array_equal(restored["linear"]["kernel"].get_value(), np.ones((2, 3)))


def test_restore_into_target_state_keeps_target_variables(tmp_path):
    saved = State({"layer": {"kernel": Param(jnp.full((2, 2), 3.0))}})
    checkpoint.save(tmp_path / "c", saved)
    target = State(
        {"layer": {"kernel": Param(jnp.zeros((2, 2)), sharding_names=("a", "b"), tag="mine")}}
    )
    restored = checkpoint.restore(tmp_path / "c", target)
    kernel = restored["layer"]["kernel"]
    assert type(kernel) is Param and kernel.sharding_names == ("a", "b") and kernel.tag == "mine"
    np.testing.assert_array_equal(kernel.get_value(), np.full((2, 2), 3.0))
    # the target itself is left alone
    np.testing.assert_array_equal(target["layer"]["kernel"].get_value(), np.zeros((2, 2)))


def test_restore_into_abstract_target(tmp_path):
    tree = {"a": jnp.arange(4.0), "k": jax.random.key(0), "step": jnp.int32(3)}
    checkpoint.save(tmp_path / "c", tree)
    restored = checkpoint.restore(tmp_path / "c", jax.eval_shape(lambda: tree))
    _same(restored, tree)


def test_python_number_fills_zero_d_array_target_and_back(tmp_path):
    checkpoint.save(tmp_path / "c", {"step": 12, "scale": jnp.float32(0.5)})
    restored = checkpoint.restore(
        tmp_path / "c", {"step": jax.ShapeDtypeStruct((), jnp.int32), "scale": 0.0}
    )
    assert restored["step"].dtype == jnp.int32 and int(restored["step"]) == 12
    assert restored["scale"] == 0.5 and type(restored["scale"]) is float


def test_metadata_is_readable_without_arrays(tmp_path):
    checkpoint.save(
        tmp_path / "c", {"w": jnp.ones((2, 2))}, metadata={"config": {"depth": 3}, "note": "x"}
    )
    info = checkpoint.read_metadata(tmp_path / "c")
    assert info.metadata == {"config": {"depth": 3}, "note": "x"}
    assert info.step is None and dict(info.entries) == {"w": "float32[2,2]"}


def test_existing_checkpoint_needs_force(tmp_path):
    checkpoint.save(tmp_path / "c", {"w": jnp.ones(2)})
    with pytest.raises(checkpoint.CheckpointExistsError, match=r"(?s)already exists.*force=True"):
        checkpoint.save(tmp_path / "c", {"w": jnp.zeros(2)})
    checkpoint.save(tmp_path / "c", {"w": jnp.zeros(2)}, force=True)
    np.testing.assert_array_equal(checkpoint.restore(tmp_path / "c")["w"], np.zeros(2))


def test_save_refuses_a_directory_with_foreign_files(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "notes.txt").write_text("mine")
    with pytest.raises(
        checkpoint.CheckpointError, match=r"not part of a plait checkpoint \(\['notes.txt'\]\)"
    ):
        checkpoint.save(tmp_path / "c", {"w": jnp.ones(2)})
    assert (tmp_path / "c" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("tree", "message"),
    [
        ({"f": lambda x: x}, r"leaf at f is a builtins.function"),
        ({"a": jax.ShapeDtypeStruct((2,), jnp.float32)}, r"leaf at a is an abstract"),
        ({"s": np.array(["a", "b"])}, r"NumPy array at s has dtype <U1"),
        ({(1, 2): jnp.ones(1)}, r"Dict key \(1, 2\) of type tuple"),
        (
            {0: jnp.ones(1), "0": jnp.ones(1)},
            r"dict at <root> has keys that are stored under the same name \['0'\]",
        ),
        ({"a.b": jnp.ones(1), "a": {"b": jnp.ones(1)}}, r"'a\.b' and 'a/b'"),
    ],
)
def test_unsupported_trees_name_the_path(tmp_path, tree, message):
    with pytest.raises(checkpoint.UnsupportedTreeError, match=message):
        checkpoint.save(tmp_path / "c", tree)
    assert not os.path.exists(tmp_path / "c" / "plait_checkpoint.json")


def test_metadata_must_be_json(tmp_path):
    with pytest.raises(checkpoint.UnsupportedTreeError, match="metadata must be JSON-serializable"):
        checkpoint.save(tmp_path / "c", {"w": jnp.ones(1)}, metadata={"arr": np.ones(2)})


def test_saving_inside_jit_is_refused(tmp_path):
    @jax.jit
    def f(x):
        checkpoint.save(tmp_path / "c", {"x": x})
        return x

    with pytest.raises(checkpoint.UnsupportedTreeError, match="tracer"):
        f(jnp.ones(2))


def test_numpy_and_jax_entries_restore_into_either_kind(tmp_path):
    checkpoint.save(tmp_path / "c", {"n": np.arange(4, dtype=np.float32), "j": jnp.arange(4.0)})
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:2]), ("x",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("x"))
    target = {
        "n": jax.ShapeDtypeStruct((4,), jnp.float32, sharding=sharding),
        "j": np.zeros(4, np.float32),
    }
    restored = checkpoint.restore(tmp_path / "c", target)
    assert isinstance(restored["n"], jax.Array) and restored["n"].sharding == sharding
    assert isinstance(restored["j"], np.ndarray)
    np.testing.assert_array_equal(restored["n"], restored["j"])
