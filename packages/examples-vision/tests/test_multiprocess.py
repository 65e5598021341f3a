"""Two processes train the vision CNN data-parallel; one process restores their checkpoint.

The parent starts three children on this machine (CPU only): two are one
``plait-vision --config digits`` run joined with ``--num-processes 2 --process-id I
--coordinator 127.0.0.1:PORT`` (gloo collectives, 2 simulated devices each, 4 in all);
the third is the same configuration in a single process with 4 devices. Then it checks
that

* each process fed only its half of every global batch, and the global batch is the
  configured one (``per_device_batch_size`` x 4 devices);
* the two-process run saved one checkpoint from both processes, and restoring it in this
  single process gives exactly the parameters the two processes ended with;
* those parameters match the single-process run's (same data, same global batch).

This file is also the children's program: ``python test_multiprocess.py ROLE ...``.
Nothing at module level may start JAX's backend, or ``jax.distributed.initialize`` would
refuse to run in the children.
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

TIMEOUT_S = 80
PER_DEVICE_BATCH = 8
DEVICES = 4
RUN_FLAGS = [
    "--config", "digits",
    "--config.num_epochs=1",
    f"--config.per_device_batch_size={PER_DEVICE_BATCH}",
    "--config.limit_train_examples=128",  # 4 steps of 32
    "--config.limit_test_examples=64",
    "--config.progress=False",
]


# --------------------------------------------------------------------------- children


def _flat_params(state) -> dict:
    """``{key path: host copy}`` of every array of a (replicated) train state."""
    import jax

    flat, _ = jax.tree_util.tree_flatten_with_path(state)
    # The state is replicated, so this process's first shard is the whole value.
    return {jax.tree_util.keystr(path): np.asarray(leaf.addressable_data(0)) for path, leaf in flat}


def child(role: str, workdir: str, out_dir: str, process_id: int = 0, port: int = 0) -> None:
    """Runs the CLI, recording the batches fed and the final state (into ``out_dir``)."""
    import jax

    import plait.examples.vision.__main__ as cli
    from plait.examples.vision import _pipeline

    record: dict = {"batches": [], "initialize": None}
    captured: dict = {}
    real_initialize = jax.distributed.initialize

    def initialize(**kwargs):
        real_initialize(**kwargs, initialization_timeout=60)
        record["initialize"] = {k: kwargs[k] for k in ("num_processes", "process_id")}
        record["collectives"] = jax.config.jax_cpu_collectives_implementation
        # Only now may plait's training modules be imported (they touch devices).
        from plait.examples.vision import _train

        real_train = _train.train_and_evaluate

        def train_and_evaluate(*args, **kw):
            captured["result"] = real_train(*args, **kw)
            return captured["result"]

        _train.train_and_evaluate = train_and_evaluate

    # What each batch placement fed JAX: [rows given by this process, rows of the global array].
    fed: list = []
    real_make_array = jax.make_array_from_process_local_data

    def make_array(sharding, local_data, global_shape=None):
        out = real_make_array(sharding, local_data, global_shape)
        fed.append([int(np.shape(local_data)[0]), int(out.shape[0])])
        return out

    jax.make_array_from_process_local_data = make_array
    real_shard_batch = _pipeline.shard_batch

    def shard_batch(batch, mesh):
        start = len(fed)
        out = real_shard_batch(batch, mesh)
        record["batches"].append({"host_rows": len(batch["label"]), "fed": fed[start:]})
        return out

    _pipeline.shard_batch = shard_batch
    argv = [*RUN_FLAGS, "--workdir", workdir]
    if role == "distributed":
        jax.distributed.initialize = initialize
        argv += ["--num-processes", "2", "--process-id", str(process_id),
                 "--coordinator", f"127.0.0.1:{port}"]
    else:  # the single-process reference; main() must not initialize anything
        jax.distributed.initialize = lambda **kw: pytest.fail(f"initialize({kw}) in 1 process")
        from plait.examples.vision import _train

        real_train = _train.train_and_evaluate
        _train.train_and_evaluate = lambda *a, **kw: captured.setdefault("result", real_train(*a, **kw))
    assert cli.main(argv) == 0
    record["process_count"], record["device_count"] = jax.process_count(), jax.device_count()
    np.savez(Path(out_dir) / f"{role}{process_id}.npz", **_flat_params(captured["result"]["state"]))
    (Path(out_dir) / f"{role}{process_id}.json").write_text(json.dumps(record))
    print(f"CHILD OK {role} {process_id}", flush=True)
    if role == "distributed":
        jax.distributed.shutdown()


# --------------------------------------------------------------------------- parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list[str], devices: int) -> subprocess.Popen:
    env = dict(
        os.environ,
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
        JAX_PLATFORMS="cpu",
    )
    for name in ("JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "JAX_COORDINATOR_ADDRESS"):
        env.pop(name, None)
    return subprocess.Popen(
        [sys.executable, __file__, *args], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _wait_all(children: dict[str, subprocess.Popen], timeout: float) -> dict[str, str]:
    """Waits for every child; kills all of them on timeout or failure, and reports."""
    deadline = time.monotonic() + timeout
    outputs: dict[str, str] = {}
    try:
        for name, child in children.items():
            remaining = max(1.0, deadline - time.monotonic())
            try:
                outputs[name], _ = child.communicate(timeout=remaining)
            except subprocess.TimeoutExpired:
                outputs[name] = f"<still running after {timeout:.0f} s>"
                break
            if child.returncode != 0:
                break  # one failed: the others may wait forever for it
    finally:
        for child in children.values():  # never leave a child behind
            if child.poll() is None:
                child.kill()
            child.wait()
    report = "\n".join(f"--- {n} (exit {c.returncode}) ---\n{outputs.get(n, '')[-3000:]}"
                       for n, c in children.items())
    failed = [n for n, c in children.items() if c.returncode != 0]
    if failed:
        pytest.fail(f"children {failed} failed:\n{report}")
    return outputs


def test_two_processes_train_save_and_one_process_restores(tmp_path):
    import jax

    from plait import checkpoint as ckpt

    port = _free_port()
    shared = tmp_path / "two-processes"
    out = tmp_path / "out"
    out.mkdir()
    children = {
        f"process {i}": _start(["distributed", str(shared), str(out), str(i), str(port)], 2)
        for i in range(2)
    }
    children["reference"] = _start(["single", str(tmp_path / "one-process"), str(out)], DEVICES)
    outputs = _wait_all(children, TIMEOUT_S)
    for name, text in outputs.items():
        assert "CHILD OK" in text, f"{name} did not finish:\n{text[-3000:]}"

    global_batch = PER_DEVICE_BATCH * DEVICES
    records = [json.loads((out / f"distributed{i}.json").read_text()) for i in range(2)]
    for i, record in enumerate(records):
        assert record["initialize"] == {"num_processes": 2, "process_id": i}
        assert record["collectives"] == "gloo"
        assert (record["process_count"], record["device_count"]) == (2, DEVICES)
        train_batches = record["batches"][:4]  # then the evaluation batches
        half = [global_batch // 2, global_batch]  # image and label: this process's half
        assert train_batches == [{"host_rows": global_batch, "fed": [half, half]}] * 4, (
            f"process {i} placed its batches as {train_batches} ([rows it fed, global rows]); "
            f"each process must feed its half ({global_batch // 2} rows) of the global batch "
            f"of {global_batch}"
        )
    reference = json.loads((out / "single0.json").read_text())
    assert reference["initialize"] is None and reference["device_count"] == DEVICES
    whole = [global_batch, global_batch]
    assert reference["batches"][:4] == [{"host_rows": global_batch, "fed": [whole, whole]}] * 4

    final = [dict(np.load(out / f"distributed{i}.npz")) for i in range(2)]
    assert final[0].keys() == final[1].keys() and len(final[0]) > 4
    for key in final[0]:  # both processes hold the same replicated state
        np.testing.assert_array_equal(final[0][key], final[1][key], err_msg=key)

    # One process (this one, 8 devices) restores what the two processes saved together.
    with ckpt.CheckpointManager(shared / "checkpoints") as manager:
        assert manager.all_steps() == [1]
        restored = manager.restore(1)["state"]
    flat, _ = jax.tree_util.tree_flatten_with_path(restored)
    restored = {jax.tree_util.keystr(p): np.asarray(v) for p, v in flat}
    assert restored.keys() == final[0].keys()
    for key, value in final[0].items():
        np.testing.assert_array_equal(restored[key], value, err_msg=key)
    assert int(restored["['step']"]) == 4

    # And two processes trained exactly like one process with the same 4 devices would.
    single = dict(np.load(out / "single0.npz"))
    assert single.keys() == final[0].keys()
    for key, value in final[0].items():
        np.testing.assert_allclose(value, single[key], rtol=1e-5, atol=1e-6, err_msg=key)


if __name__ == "__main__":
    role = sys.argv[1]
    if role == "distributed":
        child(role, sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    elif role == "single":
        child(role, sys.argv[2], sys.argv[3])
    else:
        raise SystemExit(f"unknown role {role!r}; use 'distributed' or 'single'")
