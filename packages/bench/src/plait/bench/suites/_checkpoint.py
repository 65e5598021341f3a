"""(e) Checkpoint save / restore throughput for ~200 MB of float32 arrays.

The tree: 50 arrays of equal size (a model's layers). Every save is forced to disk
(``fsync`` of every written file) before the clock stops, so page-cache tricks do not
count; restores read back into JAX arrays on the default device. Variants:

- the floor: ``numpy.save`` / ``numpy.load`` of each array into its own file;
- ``plait.checkpoint.save`` / ``restore`` (Orbax + tensorstore underneath, atomic);
- Orbax's ``StandardCheckpointer`` used directly (what Flax documents for checkpoints);
- Equinox's ``tree_serialise_leaves`` / ``tree_deserialise_leaves`` (one file).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._timing import interleaved_once
from ._common import Context, add_rows

FLOOR = "floor (numpy)"
N_ARRAYS = 50


def make_tree(total_mb: int, n_arrays: int = N_ARRAYS) -> dict[str, dict[str, jax.Array]]:
    per = max(1, total_mb * (1 << 20) // 4 // n_arrays)
    keys = jax.random.split(jax.random.key(0), n_arrays)
    return {f"layer{i:02d}": {"w": jax.random.normal(keys[i], (per,), jnp.float32)}
            for i in range(n_arrays)}


def _fsync_tree(path: Path) -> None:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    for p in files:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _numpy_save(path: Path, tree: dict) -> None:
    path.mkdir(parents=True)
    for name, leaf in tree.items():
        np.save(path / f"{name}.npy", np.asarray(leaf["w"]))


def _numpy_restore(path: Path, target: dict) -> dict:
    return {name: {"w": jnp.asarray(np.load(path / f"{name}.npy"))} for name in target}


def _plait_io() -> tuple[Callable, Callable]:
    from plait import checkpoint

    return checkpoint.save, checkpoint.restore


def _orbax_io() -> tuple[Callable, Callable]:
    import orbax.checkpoint as ocp

    def save(path: Path, tree: Any) -> None:
        with ocp.StandardCheckpointer() as ckptr:
            ckptr.save(path, tree)
            ckptr.wait_until_finished()

    def restore(path: Path, target: Any) -> Any:
        with ocp.StandardCheckpointer() as ckptr:
            return ckptr.restore(path, target)

    return save, restore


def _equinox_io(eqx: Any) -> tuple[Callable, Callable]:
    def save(path: Path, tree: Any) -> None:
        eqx.tree_serialise_leaves(path, tree)

    def restore(path: Path, target: Any) -> Any:
        return eqx.tree_deserialise_leaves(path, target)

    return save, restore


def libraries(peers: Any) -> dict[str, tuple[Callable, Callable]]:
    """name -> (save(path, tree), restore(path, target)), floor first."""
    out = {FLOOR: (_numpy_save, _numpy_restore), "plait": _plait_io()}
    if peers.flax_nnx is not None:
        out["flax (orbax StandardCheckpointer)"] = _orbax_io()
    if peers.equinox is not None:
        out["equinox (tree_serialise_leaves)"] = _equinox_io(peers.equinox)
    return out


def _round_trip(name: str, io: tuple[Callable, Callable], tree: Any, target: Any,
                base: Path, counter: list[int]) -> dict[str, float]:
    save, restore = io
    counter[0] += 1
    path = base / f"{name.split()[0]}-{counter[0]}" / ("ckpt.eqx" if "equinox" in name else "ckpt")
    path.parent.mkdir(parents=True)
    t0 = time.perf_counter()
    save(path, tree)
    _fsync_tree(path)
    t1 = time.perf_counter()
    restored = restore(path, target if name != FLOOR else tree)
    jax.block_until_ready(restored)
    t2 = time.perf_counter()
    shutil.rmtree(path.parent)
    return {"save": t1 - t0, "restore": t2 - t1}


def run(ctx: Context) -> None:
    mb = ctx.checkpoint_mb
    tree = make_tree(mb)
    jax.block_until_ready(tree)
    # Restore targets as plait documents them: abstract arrays with their shardings.
    target = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), tree)
    base = Path(tempfile.mkdtemp(prefix="plait-bench-ckpt-", dir=ctx.tmpdir))
    counter = [0]
    libs = libraries(ctx.peers)
    fns = {name: (lambda name=name, io=io: _round_trip(
        name, io, tree, tree if "equinox" in name else target, base, counter))
        for name, io in libs.items()}
    rounds = max(1, ctx.rounds // 3)
    advance = ctx.progress(f"checkpoint {mb} MB", rounds)
    try:
        res = interleaved_once(fns, rounds=rounds, warmup=min(ctx.warmup, 1), progress=advance)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    counterparts = {"plait": {lib: name for name in libs for lib in ("flax", "equinox")
                              if name.startswith(lib)}}
    for op in ("save", "restore"):
        values = {name: [r[op] for r in rs] for name, rs in res.items()}
        add_rows(ctx, "checkpoint", f"{op} {mb} MB", values, unit="s", floor=FLOOR,
                 counterparts=counterparts,
                 extras={n: {"mb_per_s": mb / sorted(v)[len(v) // 2]} for n, v in values.items()})
