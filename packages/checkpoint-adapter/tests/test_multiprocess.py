"""Saving collectively from two processes (jax.distributed on loopback, gloo) and restoring in one."""

import os
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from plait import checkpoint

WORKERS = os.path.join(os.path.dirname(__file__), "subprocess_workers.py")
sys.path.insert(0, os.path.dirname(__file__))
from subprocess_workers import global_arrays  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_two_processes(root, timeout=90):
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu"
    )
    port = _free_port()
    children = [
        subprocess.Popen(
            [sys.executable, WORKERS, "multiprocess", str(i), str(port), str(root)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    deadline = time.monotonic() + timeout
    outputs, timed_out = [], False
    for child in children:
        try:
            out, _ = child.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
            for other in children:
                other.kill()
            out, _ = child.communicate()
        outputs.append(out)
    for child in children:  # never leave a child behind
        if child.poll() is None:
            child.kill()
        child.wait()
    report = "\n".join(f"--- process {i} ---\n{out[-3000:]}" for i, out in enumerate(outputs))
    if timed_out:
        pytest.fail(f"the two processes did not finish within {timeout}s:\n{report}")
    for i, child in enumerate(children):
        assert child.returncode == 0 and f"OK {i}" in outputs[i], f"process {i} failed:\n{report}"


@pytest.mark.slow
def test_two_process_save_restores_in_one_process(tmp_path):
    full = global_arrays()
    # What the two processes will restore (each its own shards): +1 so it differs from theirs.
    checkpoint.save(tmp_path / "from_parent", {name: value + 1 for name, value in full.items()})

    _run_two_processes(tmp_path)

    mesh = Mesh(np.array(jax.devices()), ("x",))
    target = {
        "w": jax.ShapeDtypeStruct((8, 6), np.float32, sharding=NamedSharding(mesh, P("x"))),
        "b": jax.ShapeDtypeStruct((6,), np.float32, sharding=NamedSharding(mesh, P())),
        "rng": jax.ShapeDtypeStruct((), jax.random.key(0).dtype),
        "step": 0,
    }
    for directory in (tmp_path / "single", tmp_path / "managed" / "2"):
        restored = checkpoint.restore(directory, target)
        np.testing.assert_array_equal(np.asarray(restored["w"]), full["w"])
        np.testing.assert_array_equal(np.asarray(restored["b"]), full["b"])
        np.testing.assert_array_equal(
            jax.random.key_data(restored["rng"]), jax.random.key_data(jax.random.key(5))
        )
        assert restored["step"] == 11 and restored["w"].sharding == target["w"].sharding
    assert checkpoint.read_metadata(tmp_path / "single").metadata == {"writer": "two processes"}
    # One process reads it onto one device too.
    single = checkpoint.restore(tmp_path / "single")
    np.testing.assert_array_equal(np.asarray(single["w"]), full["w"])
    assert not os.path.exists(tmp_path / "managed" / "1")
