"""(f) Peak resident memory (RSS): one fresh process per variant and workload.

Each child process imports its library, builds the model, compiles and runs a few train
steps, then reports its own peak RSS (``ru_maxrss``). Workloads:

- ``mlp``: the depth-100 MLP of (a), 10 Adam steps (many small objects and arrays);
- ``decoder``: the decoder of (c), init + compile + 3 gradient evaluations.

A last row gives the peak RSS of the benchmark process itself (everything it ran).
Run a child by hand with ``python -m plait.bench.suites._rss WORKLOAD VARIANT [--tiny]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ._common import FLOOR, Context, add_rows

WORKLOADS = ("mlp", "decoder")
VARIANTS = ("floor", "plait nnx", "plait linen", "flax nnx", "flax linen", "equinox")
COUNTERPARTS = {"plait nnx": {"flax": "flax nnx", "equinox": "equinox"},
                "plait linen": {"flax": "flax linen"}}


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB.

    Linux's ``VmHWM`` where available: ``ru_maxrss`` survives ``exec``, so a child would
    report its parent's peak when the parent was larger at the fork.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _mlp_step(variant: str, depth: int) -> Callable[[], Any]:
    from . import _mlp

    if variant == "floor":
        return _mlp.floor_variant(depth, "adam")
    if variant == "equinox":
        import equinox

        return _mlp.equinox_filter_jit_variant(equinox, depth, "adam")
    lib, api = variant.split()
    if api == "nnx":
        nnx = __import__(f"{lib}.nnx", fromlist=["nnx"])
        return _mlp.nnx_jit_variant(nnx, depth, "adam")
    nn = __import__(f"{lib}.linen", fromlist=["linen"])
    return _mlp.linen_variant(nn, depth, "adam")


def _decoder_step(variant: str, tiny: bool) -> Callable[[], Any]:
    import jax

    from . import _decoder

    cfg = _decoder.TINY if tiny else _decoder.FULL
    if variant == "floor":
        build = _decoder.floor_builder(cfg)
    elif variant == "equinox":
        import equinox

        build = _decoder.equinox_builder(equinox, cfg)
    else:
        lib, api = variant.split()
        module = __import__(f"{lib}.{api}", fromlist=[api])
        build = (_decoder.nnx_builder if api == "nnx" else _decoder.linen_builder)(module, cfg)
    grad_fn, params = build()
    step = jax.jit(grad_fn)
    toks = _decoder.tokens(cfg)
    return lambda: step(params, toks)


def _mlp_depth(tiny: bool) -> int:
    return 2 if tiny else 100


def child(workload: str, variant: str, tiny: bool) -> dict[str, float]:
    """Runs one workload in this process and returns its peak RSS (the child's job)."""
    import jax

    if workload == "mlp":
        call, steps = _mlp_step(variant, _mlp_depth(tiny)), 10
    else:
        call, steps = _decoder_step(variant, tiny), 3
    for _ in range(steps):
        out = call()
    jax.block_until_ready(out)
    return {"peak_mb": peak_rss_mb()}


def measure(workload: str, variant: str, tiny: bool) -> float:
    """Peak RSS (MB) of a fresh process running ``workload`` with ``variant``."""
    cmd = [sys.executable, "-m", "plait.bench.suites._rss", workload, variant]
    if tiny:
        cmd.append("--tiny")
    # The child uses this process's platform (and skips probing for others).
    env = {**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS") or _platform()}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(
            f"plait-bench rss: the child process for workload {workload!r}, variant "
            f"{variant!r} failed (exit code {proc.returncode}).\nIts stderr ends with:\n"
            f"{proc.stderr[-2000:]}\nRun it alone to debug: {' '.join(cmd)}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])["peak_mb"]


def _platform() -> str:
    import jax

    return jax.default_backend()


def available(peers: Any) -> list[str]:
    keep = {"floor", "plait nnx", "plait linen"}
    if peers.flax_nnx is not None:
        keep |= {"flax nnx", "flax linen"}
    if peers.equinox is not None:
        keep.add("equinox")
    return [v for v in VARIANTS if v in keep]


def run(ctx: Context) -> None:
    names = available(ctx.peers)
    # A smoke run keeps one workload: each child process pays JAX's import and start-up.
    for workload in WORKLOADS[:1] if ctx.tiny else WORKLOADS:
        advance = ctx.progress(f"rss {workload}", len(names))

        def one(variant: str, workload: str = workload, advance: Callable[[], None] = advance) -> float:
            peak = measure(workload, variant, ctx.tiny)
            advance()
            return peak

        # Two children at a time: each has its own address space, so peaks do not mix.
        with ThreadPoolExecutor(max_workers=2) as pool:
            peaks = list(pool.map(one, names))
        values = {FLOOR if v == "floor" else v: [peak] for v, peak in zip(names, peaks, strict=True)}
        case = {"mlp": f"mlp depth={_mlp_depth(ctx.tiny)}, 10 adam steps",
                "decoder": f"{'tiny ' if ctx.tiny else ''}decoder init + compile + 3 grads"}
        add_rows(ctx, "rss", case[workload], values, unit="MB", counterparts=COUNTERPARTS)
    peak = peak_rss_mb()
    ctx.report.add("rss", "this benchmark process (whole run)", "plait-bench", values=[peak],
                   unit="MB")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m plait.bench.suites._rss")
    parser.add_argument("workload", choices=WORKLOADS)
    parser.add_argument("variant", choices=VARIANTS)
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args(argv)
    print(json.dumps(child(args.workload, args.variant, args.tiny)))


if __name__ == "__main__":
    main()
