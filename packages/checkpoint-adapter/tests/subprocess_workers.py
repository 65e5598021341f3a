"""Programs the crash and multi-process tests run in child processes.

Run as ``python subprocess_workers.py crash ROOT`` or
``python subprocess_workers.py multiprocess PROCESS_ID PORT ROOT``. The parent test
sets XLA_FLAGS (device count) in the child's environment.
"""

import sys
import time

import numpy as np


def crash_tree(step: int) -> dict:
    """A ~16 MB tree of many arrays, different for every step (the parent recomputes it)."""
    rng = np.random.default_rng(step)
    return {
        "layers": [{"w": rng.standard_normal((128, 512), np.float32)} for _ in range(64)],
        "step": step,
    }


def crash(root: str) -> None:
    import jax.numpy as jnp
    from plait.checkpoint import CheckpointManager

    mngr = CheckpointManager(root, async_save=True)
    as_jax = lambda step: {
        "layers": [{"w": jnp.asarray(d["w"])} for d in crash_tree(step)["layers"]],
        "step": step,
    }
    first, second = as_jax(1), as_jax(2)
    print("IMPORTED", flush=True)
    sys.stdin.readline()  # the parent runs one child at a time from here on
    start = time.perf_counter()
    mngr.save(1, first)
    mngr.wait_until_finished()
    print(f"READY {time.perf_counter() - start:.4f}", flush=True)
    sys.stdin.readline()  # the parent says go, then kills us after its delay
    mngr.save(2, second)
    mngr.wait_until_finished()
    print("DONE", flush=True)
    time.sleep(60)


# --------------------------------------------------------------------------------------


def global_arrays() -> dict:
    return {
        "w": np.arange(8 * 6, dtype=np.float32).reshape(8, 6),
        "b": np.arange(6, dtype=np.float32) * 10,
    }


def multiprocess(process_id: int, port: int, root: str) -> None:
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}",
        num_processes=2,
        process_id=process_id,
        initialization_timeout=60,
    )
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P
    from plait import checkpoint

    assert jax.process_count() == 2 and jax.device_count() == 4 and jax.local_device_count() == 2
    mesh = Mesh(np.array(jax.devices()).reshape(2, 2), ("data", "model"))
    shardings = {"w": NamedSharding(mesh, P("data", "model")), "b": NamedSharding(mesh, P("model"))}
    full = global_arrays()
    tree = {
        name: jax.make_array_from_callback(
            full[name].shape, shardings[name], lambda idx, n=name: full[n][idx]
        )
        for name in full
    }
    tree["rng"] = jax.random.key(5)
    tree["step"] = 11

    checkpoint.save(f"{root}/single", tree, metadata={"writer": "two processes"})
    with checkpoint.CheckpointManager(f"{root}/managed", max_to_keep=1) as mngr:
        mngr.save(1, tree)
        mngr.save(2, tree)
        mngr.wait_until_finished()
        assert mngr.all_steps() == [2], mngr.all_steps()

    # Restore, on both processes, a checkpoint the single-process parent wrote.
    abstract = {
        name: jax.ShapeDtypeStruct(full[name].shape, np.float32, sharding=shardings[name])
        for name in full
    }
    restored = checkpoint.restore(f"{root}/from_parent", abstract)
    for name in full:
        assert restored[name].sharding == shardings[name]
        for shard in restored[name].addressable_shards:
            np.testing.assert_array_equal(np.asarray(shard.data), full[name][shard.index] + 1)
    print(f"OK {process_id}", flush=True)
    jax.distributed.shutdown()


if __name__ == "__main__":
    if sys.argv[1] == "crash":
        crash(sys.argv[2])
    elif sys.argv[1] == "multiprocess":
        multiprocess(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    else:
        raise SystemExit(f"unknown worker {sys.argv[1]!r}")
