"""A save killed at any moment never leaves a checkpoint that restore accepts.

Child processes each save step 1 (timed), then start saving step 2 and are
SIGKILLed after a delay spread over the save's duration (early, while Orbax
writes, while the manifest and marker are written, after it finished). Whatever
the moment, step 1 still restores exactly, and step 2 is either complete and
exact or refused as incomplete.
"""

import os
import random
import signal
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from plait import checkpoint

WORKERS = os.path.join(os.path.dirname(__file__), "subprocess_workers.py")
sys.path.insert(0, os.path.dirname(__file__))
from subprocess_workers import crash_tree  # noqa: E402

# Fractions of the measured save time (of step 1) at which the child is killed during
# the save of step 2; each gets +-20% jitter.
KILL_POINTS = (0.15, 0.4, 0.7, 1.3)


def _start_child(root):
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1", JAX_PLATFORMS="cpu"
    )
    return subprocess.Popen(
        [sys.executable, WORKERS, "crash", str(root)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def _kill_during_second_save(child, fraction, rng):
    child.stdin.write("save step 1\n")
    child.stdin.flush()
    line = child.stdout.readline()
    assert line.startswith("READY"), f"child did not save step 1: {line!r}"
    save_seconds = float(line.split()[1])
    delay = save_seconds * fraction * rng.uniform(0.8, 1.2)
    child.stdin.write("go\n")
    child.stdin.flush()
    try:
        child.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        pass
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL, "the child ended on its own before the kill"


def _assert_equal_tree(restored, step):
    expected = crash_tree(step)
    assert restored["step"] == step
    for got, want in zip(restored["layers"], expected["layers"], strict=True):
        np.testing.assert_array_equal(np.asarray(got["w"]), want["w"])


@pytest.mark.slow
def test_killed_saves_never_look_complete(tmp_path):
    rng = random.Random(1234)
    outcomes = []
    roots = [tmp_path / f"run{i}" for i in range(len(KILL_POINTS))]
    # All children import JAX at once (the slow part); each is then killed in turn
    # while it is the only one working, so the measured save time holds.
    children = [_start_child(root) for root in roots]
    try:
        for child in children:
            line = child.stdout.readline()
            assert line.startswith("IMPORTED"), f"child did not start: {line!r}"
        for child, fraction in zip(children, KILL_POINTS, strict=True):
            _kill_during_second_save(child, fraction, rng)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
            child.wait()
            child.stdout.close()
            child.stdin.close()
    for root in roots:
        with checkpoint.CheckpointManager(root) as mngr:
            steps = mngr.all_steps()
            assert steps in ([1], [1, 2]), steps
            _assert_equal_tree(mngr.restore(1), 1)
            if steps == [1, 2]:
                _assert_equal_tree(mngr.restore(2), 2)
                outcomes.append("complete")
            elif os.path.exists(root / "2"):
                with pytest.raises(
                    checkpoint.IncompleteCheckpointError, match="has no commit marker"
                ):
                    checkpoint.restore(root / "2")
                # Orbax's own finalization never exposed a half-written state/ either:
                # it is absent or still under its temporary name, or complete.
                state = root / "2" / "state"
                assert not state.exists() or (state / "commit_success.txt").exists()
                outcomes.append("incomplete")
            else:
                outcomes.append("not started")
            # The leftover never blocks the next save of the same step.
            mngr.save(2, {"layers": [{"w": jnp.zeros(1)}], "step": 2}, force=True)
            mngr.wait_until_finished()
            assert mngr.all_steps() == [1, 2]
    # The kill points cover an interrupted save, not only before/after.
    assert "incomplete" in outcomes, outcomes
