"""Restoring onto other device counts and layouts than the save used (8 simulated CPUs)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, SingleDeviceSharding
from jax.sharding import PartitionSpec as P
from plait import checkpoint

FULL = np.arange(16 * 6, dtype=np.float32).reshape(16, 6)


def _mesh(n, shape=None, names=("x",)):
    devices = np.array(jax.devices()[:n]).reshape(shape or (n,))
    return Mesh(devices, names)


def _sharded(sharding):
    return jax.make_array_from_callback(FULL.shape, sharding, lambda index: FULL[index])


LAYOUTS = {
    "8 devices, rows": lambda: NamedSharding(_mesh(8), P("x")),
    "8 devices, 4x2 grid": lambda: NamedSharding(_mesh(8, (4, 2), ("a", "b")), P("a", "b")),
    "4 devices, rows": lambda: NamedSharding(_mesh(4), P("x")),
    "4 devices, replicated": lambda: NamedSharding(_mesh(4), P()),
    "2 devices, columns": lambda: NamedSharding(_mesh(2), P(None, "x")),
    "1 device": lambda: SingleDeviceSharding(jax.devices()[5]),
}


@pytest.mark.parametrize(
    ("saved_on", "restored_on"),
    [
        ("8 devices, rows", "4 devices, rows"),
        ("8 devices, rows", "1 device"),
        ("8 devices, 4x2 grid", "2 devices, columns"),
        ("1 device", "8 devices, rows"),
        ("4 devices, replicated", "8 devices, 4x2 grid"),
        ("2 devices, columns", "4 devices, replicated"),
    ],
)
def test_restore_reshards_onto_the_target_sharding(tmp_path, saved_on, restored_on):
    checkpoint.save(tmp_path / "c", {"w": _sharded(LAYOUTS[saved_on]())})
    sharding = LAYOUTS[restored_on]()
    target = {"w": jax.ShapeDtypeStruct(FULL.shape, jnp.float32, sharding=sharding)}
    restored = checkpoint.restore(tmp_path / "c", target)["w"]
    assert restored.sharding == sharding
    np.testing.assert_array_equal(np.asarray(restored), FULL)
    for shard in restored.addressable_shards:
        np.testing.assert_array_equal(np.asarray(shard.data), FULL[shard.index])


def test_key_arrays_reshard(tmp_path):
    keys = jax.random.split(jax.random.key(7), 8)
    keys = jax.device_put(keys, NamedSharding(_mesh(8), P("x")))
    checkpoint.save(tmp_path / "c", {"keys": keys})
    target_sharding = NamedSharding(_mesh(4), P("x"))
    target = {"keys": jax.ShapeDtypeStruct((8,), keys.dtype, sharding=target_sharding)}
    restored = checkpoint.restore(tmp_path / "c", target)["keys"]
    assert restored.sharding == target_sharding and restored.dtype == keys.dtype
    np.testing.assert_array_equal(jax.random.key_data(restored), jax.random.key_data(keys))


def test_shardings_argument_overrides_target_and_works_without_target(tmp_path):
    checkpoint.save(tmp_path / "c", {"w": _sharded(LAYOUTS["8 devices, rows"]()), "b": jnp.ones(2)})
    everywhere = NamedSharding(_mesh(4), P())
    restored = checkpoint.restore(tmp_path / "c", shardings=everywhere)
    assert restored["w"].sharding == everywhere and restored["b"].sharding == everywhere

    rows = NamedSharding(_mesh(4), P("x"))
    restored = checkpoint.restore(
        tmp_path / "c",
        jax.eval_shape(lambda: {"w": jnp.zeros((16, 6)), "b": jnp.zeros(2)}),
        shardings={"w": rows, "b": None},
    )
    assert restored["w"].sharding == rows
    assert restored["b"].sharding == SingleDeviceSharding(jax.local_devices()[0])
    np.testing.assert_array_equal(np.asarray(restored["w"]), FULL)


def test_shardings_tree_must_hold_shardings(tmp_path):
    checkpoint.save(tmp_path / "c", {"w": jnp.ones(2)})
    with pytest.raises(checkpoint.UnsupportedTreeError, match=r"shardings= holds a str at w"):
        checkpoint.restore(tmp_path / "c", {"w": jnp.zeros(2)}, shardings={"w": "x"})


def test_replicas_get_their_own_buffers_and_survive_donation(tmp_path):
    # Restore reads a range held by several devices once; each device must still get
    # its own host memory, or donating one replica would change the others.
    checkpoint.save(tmp_path / "c", {"w": jnp.asarray(FULL)})
    sharding = NamedSharding(_mesh(8, (4, 2), ("a", "b")), P("a"))
    target = {"w": jax.ShapeDtypeStruct(FULL.shape, jnp.float32, sharding=sharding)}
    restored = checkpoint.restore(tmp_path / "c", target)["w"]
    pointers = [shard.data.unsafe_buffer_pointer() for shard in restored.addressable_shards]
    assert len(set(pointers)) == 8
    doubled = jax.jit(lambda w: w * 2, donate_argnums=0)(restored)
    np.testing.assert_array_equal(np.asarray(doubled), FULL * 2)
    again = checkpoint.restore(tmp_path / "c", target)["w"]
    np.testing.assert_array_equal(np.asarray(again), FULL)


def test_restored_arrays_do_not_change_when_the_checkpoint_is_deleted(tmp_path):
    import shutil

    checkpoint.save(tmp_path / "c", {"w": jnp.asarray(FULL), "s": jnp.float32(3)})
    restored = checkpoint.restore(tmp_path / "c")
    shutil.rmtree(tmp_path / "c")
    np.testing.assert_array_equal(np.asarray(restored["w"]), FULL)
    assert float(restored["s"]) == 3.0
