"""Two processes train the vision CNN data-parallel; one process restores their checkpoint.

The parent starts two children on this machine (CPU only) that together are one
``plait-vision --config digits`` run, joined with ``--num-processes 2 --process-id I
--coordinator 127.0.0.1:PORT`` (gloo collectives, 2 simulated devices each, 4 in all).
Meanwhile it trains the same configuration itself, in one process on 8 devices with the
same global batch. Then it checks that

* each process fed only its half of every global batch, and the global batch is the
  configured one (``per_device_batch_size`` x 4 devices);
* the two-process run saved one checkpoint from both processes, and restoring it in this
  single process gives exactly the parameters the two processes ended with;
* those parameters match the single-process run's (same data, same global batches).

This file is also the children's program: ``python test_multiprocess.py PROCESS_ID PORT
WORKDIR OUT_DIR``. Nothing at module level may start JAX's backend, or
``jax.distributed.initialize`` would refuse to run in the children.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

TIMEOUT_S = 150  # generous: the children import and compile on a shared 2-core machine
PER_DEVICE_BATCH = 8  # x 4 devices in the two-process run
GLOBAL_BATCH = PER_DEVICE_BATCH * 4
RUN_FLAGS = [
    "--config", "digits",
    "--config.num_epochs=1",
    "--config.limit_train_examples=128",  # 4 steps of 32
    "--config.limit_test_examples=64",
    "--config.progress=False",
]


def _flat(state) -> dict:
    """``{key path: host copy}`` of every array of a (replicated) train state."""
    import jax

    flat, _ = jax.tree_util.tree_flatten_with_path(state)
    # The state is replicated, so this process's first shard is the whole value.
    return {jax.tree_util.keystr(path): np.asarray(leaf.addressable_data(0)) for path, leaf in flat}


# --------------------------------------------------------------------------- children


def child(process_id: int, port: int, workdir: str, out_dir: str) -> None:
    """One of the two processes: runs the CLI, recording the batches fed and the final state."""
    import jax
    import plait.examples.vision.__main__ as cli
    from plait.examples.vision import _pipeline

    record: dict = {"batches": [], "initialize": None}
    captured: dict = {}
    real_initialize = jax.distributed.initialize

    def initialize(**kwargs):
        real_initialize(**{**kwargs, "initialization_timeout": 60})
        record["initialize"] = {k: kwargs[k] for k in ("num_processes", "process_id")}
        record["collectives"] = jax.config.jax_cpu_collectives_implementation
        # Only now may plait's training modules be imported (they touch devices).
        from plait.examples.vision import _train

        real_train = _train.train_and_evaluate

        def train_and_evaluate(*args, **kw):
            captured["result"] = real_train(*args, **kw)
            return captured["result"]

        _train.train_and_evaluate = train_and_evaluate

    # What each batch placement fed JAX: [rows this process gave, rows of the global array].
    fed: list = []
    real_make_array = jax.make_array_from_process_local_data

    def make_array(sharding, local_data, global_shape=None):
        out = real_make_array(sharding, local_data, global_shape)
        fed.append([int(np.shape(local_data)[0]), int(out.shape[0])])
        return out

    real_shard_batch = _pipeline.shard_batch

    def shard_batch(batch, mesh):
        start = len(fed)
        out = real_shard_batch(batch, mesh)
        record["batches"].append({"host_rows": len(batch["label"]), "fed": fed[start:]})
        return out

    jax.distributed.initialize = initialize
    jax.make_array_from_process_local_data = make_array
    _pipeline.shard_batch = shard_batch
    argv = [*RUN_FLAGS, f"--config.per_device_batch_size={PER_DEVICE_BATCH}",
            "--workdir", workdir, "--num-processes", "2", "--process-id", str(process_id),
            "--coordinator", f"127.0.0.1:{port}"]
    assert cli.main(argv) == 0
    record["process_count"], record["device_count"] = jax.process_count(), jax.device_count()
    np.savez(Path(out_dir) / f"process{process_id}.npz", **_flat(captured["result"]["state"]))
    (Path(out_dir) / f"process{process_id}.json").write_text(json.dumps(record))
    print(f"CHILD OK {process_id}", flush=True)
    jax.distributed.shutdown()


# --------------------------------------------------------------------------- parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(process_id: int, port: int, workdir: Path, out_dir: Path) -> subprocess.Popen:
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu")
    for name in ("JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "JAX_COORDINATOR_ADDRESS"):
        env.pop(name, None)
    return subprocess.Popen(
        [sys.executable, __file__, str(process_id), str(port), str(workdir), str(out_dir)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _wait_all(children: dict[str, subprocess.Popen], timeout: float) -> dict[str, str]:
    """Waits for every child; on a timeout or a failure kills them all and fails the test."""
    deadline = time.monotonic() + timeout
    outputs: dict[str, str] = {}
    try:
        for name, child in children.items():
            try:
                outputs[name], _ = child.communicate(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                break
            if child.returncode != 0:
                break  # one failed: the other may wait for it forever
    finally:
        for name, child in children.items():  # never leave a child behind
            if child.poll() is None:
                child.kill()
                text, _ = child.communicate()  # also closes its pipe
                outputs[name] = f"{text}\n<killed after {timeout:.0f} s>"
            child.wait()
    failed = [n for n, c in children.items() if c.returncode != 0]
    if failed:
        report = "\n".join(f"--- {n} (exit {c.returncode}) ---\n{outputs.get(n, '')[-3000:]}"
                           for n, c in children.items())
        pytest.fail(f"children {failed} failed:\n{report}")
    return outputs


def test_two_processes_train_save_and_one_process_restores(tmp_path):
    import jax
    from plait import checkpoint as ckpt
    from plait.examples.vision import _train
    from plait.examples.vision.__main__ import parse_args

    port = _free_port()
    shared = tmp_path / "two-processes"
    out = tmp_path / "out"
    out.mkdir()
    children = {f"process {i}": _start(i, port, shared, out) for i in range(2)}
    try:
        # The reference, while the children run: this process's 8 devices, same global batch.
        assert jax.device_count() == 8
        _, config = parse_args([*RUN_FLAGS, f"--config.per_device_batch_size={GLOBAL_BATCH // 8}"])
        single = _flat(_train.train_and_evaluate(config, tmp_path / "one-process")["state"])
    finally:
        outputs = _wait_all(children, TIMEOUT_S)
    for name, text in outputs.items():
        assert "CHILD OK" in text, f"{name} did not finish:\n{text[-3000:]}"

    records = [json.loads((out / f"process{i}.json").read_text()) for i in range(2)]
    for i, record in enumerate(records):
        assert record["initialize"] == {"num_processes": 2, "process_id": i}
        assert record["collectives"] == "gloo"
        assert (record["process_count"], record["device_count"]) == (2, 4)
        train_batches = record["batches"][:4]  # then the evaluation batches
        half = [GLOBAL_BATCH // 2, GLOBAL_BATCH]  # image and label: this process's half
        assert train_batches == [{"host_rows": GLOBAL_BATCH, "fed": [half, half]}] * 4, (
            f"process {i} placed its batches as {train_batches} ([rows it fed, global rows]); "
            f"each process must feed its half ({GLOBAL_BATCH // 2} rows) of the global batch "
            f"of {GLOBAL_BATCH}"
        )

    final = [dict(np.load(out / f"process{i}.npz")) for i in range(2)]
    assert final[0].keys() == final[1].keys() and len(final[0]) > 4
    for key in final[0]:  # both processes hold the same replicated state
        np.testing.assert_array_equal(final[0][key], final[1][key], err_msg=key)

    # One process (this one) restores what the two processes saved together.
    with ckpt.CheckpointManager(shared / "checkpoints") as manager:
        assert manager.all_steps() == [1]
        restored = _flat(manager.restore(1)["state"])
    assert restored.keys() == final[0].keys()
    for key, value in final[0].items():
        np.testing.assert_array_equal(restored[key], value, err_msg=key)
    assert int(restored["['step']"]) == 4

    # And the two processes trained as one process does on the same global batches.
    assert single.keys() == final[0].keys()
    for key, value in final[0].items():
        np.testing.assert_allclose(value, single[key], rtol=1e-4, atol=1e-5, err_msg=key)


if __name__ == "__main__":
    child(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4])
