"""Two processes train the tiny Gemma data-parallel; one process restores their checkpoint.

The parent starts two children on this machine (CPU only) that together are one
``plait-gemma train`` run, joined with ``--num-processes 2 --process-id I --coordinator
127.0.0.1:PORT`` (gloo collectives, 2 simulated devices each, 4 in all), on a small fake
corpus in a temporary ``PLAIT_DATA_DIR``, with the conftest's micro configuration given as
``--config.*`` overrides. Meanwhile the parent trains that configuration itself, in one
process on one device. Then it checks that

* each process fed only its half of every global batch, and the CLI built the mesh over
  all 4 devices of both processes;
* both processes ended with the same parameters and optimizer state;
* the checkpoint the two processes saved together, restored in this single process, holds
  exactly those arrays, and ``plait-gemma sample``'s loader rebuilds the same model from it;
* the parameters match the single-process run's (same data, same global batches).

This file is also the children's program: ``python test_multiprocess.py PROCESS_ID PORT
WORKDIR OUT_DIR FLAGS_JSON``. Nothing at module level may start JAX's backend, or
``jax.distributed.initialize`` would refuse to run in the children.
"""

import dataclasses
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
SAMPLE_TOKENS = 4  # the children also sample at the end (a computation over the global parameters)


def _override_flags(base, config, prefix: str = "--config.") -> list[str]:
    """``--config.a.b=VALUE`` flags that turn the preset ``base`` into ``config``."""
    flags = []
    for field in dataclasses.fields(config):
        old, new = getattr(base, field.name), getattr(config, field.name)
        if dataclasses.is_dataclass(new):
            flags += _override_flags(old, new, f"{prefix}{field.name}.")
        elif new != old:
            flags.append(f"{prefix}{field.name}={new!r}")
    return flags


def _flat(tree) -> dict[str, np.ndarray]:
    """``{'model/layers/0/...': host copy}`` of every array of a (replicated) train state.

    Works on live states (``nnx.Variable`` leaves) and on restored plain trees alike, so
    the two can be compared key by key.
    """
    import jax
    from plait import nnx

    def is_variable(x):
        return isinstance(x, nnx.Variable)

    leaves, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_variable)
    flat = {}
    for path, leaf in leaves:
        value = leaf.get_value() if is_variable(leaf) else leaf
        key = "/".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path)
        # Replicated: this process's first shard is the whole value.
        flat[key] = np.asarray(value.addressable_data(0) if isinstance(value, jax.Array) else value)
    return flat


# --------------------------------------------------------------------------- children


def child(process_id: int, port: int, workdir: str, out_dir: str, flags: list[str]) -> None:
    """One of the two processes: runs the CLI, recording the batches fed and the final state."""
    import jax
    import plait.examples.gemma.__main__ as cli

    record: dict = {"fed": [], "initialize": None}
    captured: dict = {}
    real_initialize = jax.distributed.initialize

    def initialize(*args, **kwargs):
        real_initialize(*args, **{**kwargs, "initialization_timeout": 60})
        record["initialize"] = {k: kwargs[k] for k in ("num_processes", "process_id")}
        record["collectives"] = jax.config.jax_cpu_collectives_implementation
        # Imported only now that the distributed runtime is up (the CLI does the same).
        from plait.examples.gemma import _train

        real_train = _train.train

        def train(*a, **kw):
            captured["result"] = real_train(*a, **kw)
            return captured["result"]

        _train.train = train

    real_make_array = jax.make_array_from_process_local_data

    def make_array(sharding, local_data, global_shape=None):
        out = real_make_array(sharding, local_data, global_shape)
        record["fed"].append([int(np.shape(local_data)[0]), int(out.shape[0])])  # [rows given, global rows]
        return out

    jax.distributed.initialize = initialize
    jax.make_array_from_process_local_data = make_array
    argv = ["train", "--config", "tiny", *flags, "--no-progress", "--workdir", workdir, "--num-processes", "2",
            "--process-id", str(process_id), "--coordinator", f"127.0.0.1:{port}"]
    assert cli.main(argv) == 0
    result = captured["result"]
    record["process_count"], record["device_count"] = jax.process_count(), jax.device_count()
    record["summary"] = {k: result.summary[k] for k in ("devices", "mesh", "steps", "final_val_loss")}
    np.savez(Path(out_dir) / f"process{process_id}.npz", **_flat(result.state))
    (Path(out_dir) / f"process{process_id}.json").write_text(json.dumps(record))
    print(f"CHILD OK {process_id}", flush=True)
    jax.distributed.shutdown()


# --------------------------------------------------------------------------- parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(process_id: int, port: int, workdir: Path, out_dir: Path, flags: list[str], data_dir: Path, log):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu",
               PLAIT_DATA_DIR=str(data_dir))
    for name in ("JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "JAX_COORDINATOR_ADDRESS"):
        env.pop(name, None)
    return subprocess.Popen(
        [sys.executable, __file__, str(process_id), str(port), str(workdir), str(out_dir), json.dumps(flags)],
        env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
    )


def _tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "<no output>"


def _wait_all(children: dict[str, subprocess.Popen], logs: dict[str, Path], deadline: float) -> None:
    """Waits for every child; once one fails or ``deadline`` passes, kills the rest and fails.

    A failed child leaves the other blocked in a collective, so waiting for it would only
    burn the whole timeout.
    """
    problem = None
    killed = set()
    try:
        while problem is None:
            codes = {name: child.poll() for name, child in children.items()}  # polls every child
            failed = [name for name, code in codes.items() if code not in (None, 0)]
            if None not in codes.values():
                break
            if failed:
                problem = f"{', '.join(failed)} failed"
            elif time.monotonic() > deadline:
                problem = f"no result within {TIMEOUT_S} s"
            else:
                time.sleep(0.2)
    finally:
        for child in children.values():  # never leave a child behind
            if child.poll() is None:
                child.kill()
                killed.add(child)
            child.wait()
    failed = [n for n, c in children.items() if c.returncode != 0]
    if problem or failed:
        report = "\n".join(
            f"--- {n} (exit {c.returncode}{', killed by the test' if c in killed else ''}) ---\n{_tail(logs[n])}"
            for n, c in children.items()
        )
        pytest.fail(f"two-process training: {problem or ', '.join(failed) + ' failed'}:\n{report}")


def test_two_processes_train_save_and_one_process_restores(tmp_path, micro_train_config, texts):
    import jax
    from plait import checkpoint as ckpt
    from plait import nnx
    from plait.examples.gemma import get_config, train
    from plait.examples.gemma.__main__ import load_trained_model
    from plait.examples.gemma._pipeline import language_model_batch

    config = dataclasses.replace(micro_train_config, sample_tokens=SAMPLE_TOKENS)
    steps, half = config.num_steps, config.batch_size // 2
    batch_fields = language_model_batch(np.zeros((1, 2), np.int32))
    checkpoints = list(range(config.checkpoint_every, steps + 1, config.checkpoint_every))
    assert checkpoints[-1] == steps and 1 < len(checkpoints) <= config.keep_checkpoints
    corpus = tmp_path / "data" / "shakespeare"
    corpus.mkdir(parents=True)
    for i, text in enumerate(texts):
        (corpus / f"play{i}_gut.txt").write_text(text)
    port, flags = _free_port(), _override_flags(get_config("tiny"), config)
    shared, out = tmp_path / "two-processes", tmp_path / "out"
    out.mkdir()
    names = [f"process {i}" for i in range(2)]
    logs = {name: tmp_path / f"process{i}.log" for i, name in enumerate(names)}
    handles = {name: open(logs[name], "wb") for name in names}  # closed in the finally below
    children, deadline = {}, time.monotonic() + TIMEOUT_S
    try:
        for i, name in enumerate(names):
            children[name] = _start(i, port, shared, out, flags, tmp_path / "data", handles[name])
        # The reference, while the children run: one process, one device (the conftest's
        # micro configuration, so the compiled steps are shared with test_train.py).
        assert jax.device_count() == 8, "conftest sets 8 simulated CPU devices"
        single = train(micro_train_config, tmp_path / "one-process", documents=texts, devices=jax.devices()[:1],
                       progress=False, log=lambda _: None)
        single_params = _flat(single.state["model"])
    finally:
        try:
            _wait_all(children, logs, deadline)
        finally:
            for handle in handles.values():
                handle.close()
    for name in names:
        assert "CHILD OK" in _tail(logs[name]), f"{name} did not finish:\n{_tail(logs[name])}"

    records = [json.loads((out / f"process{i}.json").read_text()) for i in range(2)]
    for i, record in enumerate(records):
        assert record["initialize"] == {"num_processes": 2, "process_id": i}
        assert record["collectives"] == "gloo"
        assert (record["process_count"], record["device_count"]) == (2, 4)
        assert record["summary"]["devices"] == 4 and record["summary"]["mesh"] == {"data": 4, "fsdp": 1, "tensor": 1}
        assert record["summary"]["steps"] == steps
        # One array per batch field (inputs, targets, ...) per training step and per evaluation.
        expected = [[half, 2 * half]] * (len(batch_fields) * (steps + len(checkpoints)))
        assert record["fed"] == expected, (
            f"process {i} placed its batches as {record['fed']} ([rows it fed, global rows]); each process "
            f"must feed its half ({half} rows) of every global batch of {2 * half}"
        )
    assert records[0]["summary"]["final_val_loss"] == records[1]["summary"]["final_val_loss"]

    final = [dict(np.load(out / f"process{i}.npz")) for i in range(2)]
    assert final[0].keys() == final[1].keys()
    assert {k.split("/")[0] for k in final[0]} == {"model", "optimizer"}
    for key in final[0]:  # both processes hold the same replicated state
        np.testing.assert_array_equal(final[0][key], final[1][key], err_msg=key)

    # One process (this one) restores what the two processes saved together.
    with ckpt.CheckpointManager(shared / "checkpoints") as manager:
        assert manager.all_steps() == checkpoints
        restored = _flat(manager.restore(steps))
    assert restored.keys() == final[0].keys()
    for key, value in final[0].items():
        np.testing.assert_array_equal(restored[key], value, err_msg=key)
    # `plait-gemma sample`'s loader rebuilds the run's configuration and the same model.
    model, _, loaded_config = load_trained_model(shared)
    assert loaded_config == config
    loaded = _flat(nnx.state(model))
    assert loaded.keys() == single_params.keys()
    for key, value in loaded.items():
        np.testing.assert_array_equal(value, final[0][f"model/{key}"], err_msg=key)
    assert (shared / "samples.txt").read_text().startswith("ROMEO:\n")

    # And the two processes trained as one process does on the same global batches.
    for key, value in single_params.items():
        np.testing.assert_allclose(final[0][f"model/{key}"], value, rtol=1e-4, atol=1e-5, err_msg=key)


if __name__ == "__main__":
    try:
        child(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], json.loads(sys.argv[5]))
    except BaseException:
        # A normal exit would wait in JAX's distributed shutdown for the other process
        # (which waits for this one): exit now, so that the parent sees the failure at once.
        import traceback

        traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
