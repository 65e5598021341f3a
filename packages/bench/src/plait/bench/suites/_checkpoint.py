"""(e) Checkpoint save/restore throughput of ~200 MB float32 against numpy on the same disk."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np


def make_tree(total_mb: int = 200, n_arrays: int = 50) -> dict:
    per = total_mb * (1 << 20) // 4 // n_arrays
    keys = jax.random.split(jax.random.key(0), n_arrays)
    return {f"layer{i:02d}": {"w": jax.random.normal(keys[i], (per,), jnp.float32)}
            for i in range(n_arrays)}


def _fsync_dir(path: Path) -> None:
    for p in path.rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())


def numpy_save(tree: dict, path: Path) -> None:
    path.mkdir(parents=True)
    for name, leaf in tree.items():
        np.save(path / f"{name}.npy", np.asarray(leaf["w"]))
    _fsync_dir(path)


def numpy_restore(tree: dict, path: Path) -> dict:
    return {name: {"w": jnp.asarray(np.load(path / f"{name}.npy"))} for name in tree}


def measure(rounds: int = 3, total_mb: int = 200, root: str | None = None) -> dict[str, list[float]]:
    """Seconds per save / restore for numpy and plait.checkpoint, interleaved per round."""
    from plait import checkpoint as ckpt

    tree = make_tree(total_mb)
    jax.block_until_ready(tree)
    target = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), tree)
    base = Path(tempfile.mkdtemp(prefix="plait-bench-ckpt-", dir=root))
    times: dict[str, list[float]] = {k: [] for k in
                                     ("numpy save", "numpy restore", "plait save", "plait restore")}
    try:
        for r in range(rounds):
            p_np, p_pl = base / f"np{r}", base / f"pl{r}"
            t0 = time.perf_counter()
            numpy_save(tree, p_np)
            times["numpy save"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            ckpt.save(p_pl, tree)
            _fsync_dir(p_pl)
            times["plait save"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            jax.block_until_ready(numpy_restore(tree, p_np))
            times["numpy restore"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            jax.block_until_ready(ckpt.restore(p_pl, target))
            times["plait restore"].append(time.perf_counter() - t0)
            shutil.rmtree(p_np)
            shutil.rmtree(p_pl)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return times
