"""``plait-bench``: measure plait against a hand-written JAX floor and against its peers.

    plait-bench                          # every suite, table on the terminal, JSON in bench.json
    plait-bench --suite mlp --quick      # fewer rounds
    plait-bench --compare old.json       # show the change against an earlier run

Suites: mlp (train-step cost at depth 5/20/100, SGD and Adam), graph (split/merge/state/
update at depth 100), compile (trace+compile of a 4-layer decoder), cnn (compute-bound
step), checkpoint (~200 MB save/restore vs numpy), rss (peak resident memory).
Peers (Flax, Equinox) run too when importable: `pip install plait-bench[peers]`.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

SUITES = ("mlp", "graph", "compile", "cnn", "checkpoint", "rss")


def load_peers(disabled: bool) -> dict:
    peers: dict = {}
    if disabled:
        return peers
    try:
        from flax import linen as flax_linen
        from flax import nnx as flax_nnx

        peers["flax"] = (flax_nnx, flax_linen)
    except ImportError:
        pass
    try:
        import equinox

        peers["equinox"] = equinox
    except ImportError:
        pass
    return peers


class Report:
    """Rows of results, printed as rich tables and saved as JSON."""

    def __init__(self, compare: dict | None):
        self.rows: list[dict] = []
        self.compare = {(r["suite"], r["case"], r["variant"]): r for r in (compare or {}).get("rows", [])}

    def add(self, suite: str, case: str, variant: str, **values) -> None:
        self.rows.append({"suite": suite, "case": case, "variant": variant, **values})

    def print(self, console) -> None:
        from rich.table import Table

        for suite in dict.fromkeys(r["suite"] for r in self.rows):
            rows = [r for r in self.rows if r["suite"] == suite]
            table = Table(title=f"plait-bench: {suite}")
            for col in ("case", "variant", "median", "min-max", "ratio to floor", "vs previous"):
                table.add_column(col, justify="left" if col in ("case", "variant") else "right")
            for r in rows:
                unit = r.get("unit", "ms")
                scale = 1e3 if unit == "ms" else 1.0
                med = f"{r['median'] * scale:.3f} {unit}" if "median" in r else ""
                spread = (f"{r['min'] * scale:.3f}-{r['max'] * scale:.3f}"
                          if "min" in r else "")
                ratio = (f"{r['ratio_median']:.2f}x ({r['ratio_min']:.2f}-{r['ratio_max']:.2f})"
                         if "ratio_median" in r else "")
                prev = self.compare.get((r["suite"], r["case"], r["variant"]))
                delta = ""
                if prev and "median" in prev and "median" in r and prev["median"]:
                    delta = f"{(r['median'] / prev['median'] - 1) * 100:+.1f}%"
                table.add_row(r["case"], r["variant"], med, spread, ratio, delta)
            console.print(table)


def run_mlp(args, report: Report, peers: dict, progress) -> None:
    from ._timing import interleaved
    from .suites import _mlp

    import jax

    for depth in args.depths:
        for opt in ("sgd", "adam"):
            builders = _mlp.variants(depth, opt, peers)
            fns = {name: build() for name, build in builders.items()}
            task = progress.add_task(f"mlp depth={depth} {opt}", total=args.rounds)
            res = interleaved(fns, floor="floor (jax.jit, dict)", rounds=args.rounds,
                              inner=args.inner, block=jax.block_until_ready,
                              progress=lambda: progress.advance(task))
            for name, m in res.items():
                s = m.summary()
                report.add("mlp", f"depth={depth} {opt}", name, median=s["median_s"],
                           min=s["min_s"], max=s["max_s"], ratio_median=s["ratio_median"],
                           ratio_min=s["ratio_min"], ratio_max=s["ratio_max"], unit="ms")


def run_graph(args, report: Report, peers: dict, progress) -> None:
    from ._timing import interleaved
    from .suites import _graph

    from plait import nnx

    fns = _graph.variants(nnx, "plait")
    if "flax" in peers:
        fns.update(_graph.variants(peers["flax"][0], "flax"))
    task = progress.add_task("graph ops depth=100", total=args.rounds)
    res = interleaved(fns, floor=None, rounds=args.rounds, inner=max(3, args.inner // 4),
                      progress=lambda: progress.advance(task))
    for name, m in res.items():
        op = name.split(" ", 1)[1]
        s = m.summary()
        extra = {}
        flax_name = f"flax {op}"
        if name.startswith("plait") and flax_name in res:
            ratios = [f / p for f, p in zip(res[flax_name].seconds, m.seconds)]
            extra = {"speedup_vs_flax": statistics.median(ratios)}
        report.add("graph", op, name.split(" ", 1)[0], median=s["median_s"], min=s["min_s"],
                   max=s["max_s"], unit="ms", **extra)


def run_compile(args, report: Report, peers: dict, progress) -> None:
    from .suites import _decoder

    from plait import linen, nnx

    fns = _decoder.compile_variants(nnx, linen, "plait")
    if "flax" in peers:
        fns.update(_decoder.compile_variants(peers["flax"][0], peers["flax"][1], "flax"))
    rounds = max(2, args.rounds // 2)
    task = progress.add_task("decoder trace+compile", total=rounds)
    results: dict[str, list[tuple[float, float]]] = {n: [] for n in fns}
    for r in range(rounds):
        names = list(fns)
        for name in names[r % len(names):] + names[: r % len(names)]:
            results[name].append(fns[name]())
        progress.advance(task)
    floor_total = [t + c for t, c in results["floor (jax)"]]
    for name, times in results.items():
        total = [t + c for t, c in times]
        ratios = [a / b for a, b in zip(total, floor_total)]
        report.add("compile", "decoder fwd+bwd", name, median=statistics.median(total),
                   min=min(total), max=max(total), unit="s",
                   trace_s=statistics.median(t for t, _ in times),
                   compile_s=statistics.median(c for _, c in times),
                   ratio_median=statistics.median(ratios), ratio_min=min(ratios),
                   ratio_max=max(ratios))


def run_cnn(args, report: Report, peers: dict, progress) -> None:
    from ._timing import interleaved
    from .suites import _decoder

    import jax

    from plait import nnx

    builders = _decoder.cnn_step_variants(nnx, "plait")
    if "flax" in peers:
        builders.update(_decoder.cnn_step_variants(peers["flax"][0], "flax"))
    fns = {n: b() for n, b in builders.items()}
    rounds = max(3, args.rounds // 2)
    task = progress.add_task("cnn step", total=rounds)
    res = interleaved(fns, floor="floor (jax.jit)", rounds=rounds, inner=3, warmup=2,
                      block=jax.block_until_ready, progress=lambda: progress.advance(task))
    for name, m in res.items():
        s = m.summary()
        report.add("cnn", "28x28x1 batch 128", name, median=s["median_s"], min=s["min_s"],
                   max=s["max_s"], ratio_median=s["ratio_median"], ratio_min=s["ratio_min"],
                   ratio_max=s["ratio_max"], unit="ms")


def run_checkpoint(args, report: Report, peers: dict, progress) -> None:
    from .suites import _checkpoint

    task = progress.add_task(f"checkpoint {args.checkpoint_mb} MB", total=1)
    times = _checkpoint.measure(rounds=max(2, args.rounds // 3), total_mb=args.checkpoint_mb,
                                root=args.tmpdir)
    progress.advance(task)
    for op in ("save", "restore"):
        floor = times[f"numpy {op}"]
        for lib in ("numpy", "plait"):
            t = times[f"{lib} {op}"]
            ratios = [a / b for a, b in zip(t, floor)]
            report.add("checkpoint", f"{op} {args.checkpoint_mb} MB", lib,
                       median=statistics.median(t), min=min(t), max=max(t), unit="s",
                       mb_per_s=args.checkpoint_mb / statistics.median(t),
                       ratio_median=statistics.median(ratios), ratio_min=min(ratios),
                       ratio_max=max(ratios))


def run_rss(args, report: Report, peers: dict, progress) -> None:
    # ru_maxrss is KiB on Linux: the peak of this whole process, so run it last.
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report.add("rss", "peak resident memory (whole run)", "process", median=peak_mb,
               min=peak_mb, max=peak_mb, unit="MB")


RUNNERS = {"mlp": run_mlp, "graph": run_graph, "compile": run_compile, "cnn": run_cnn,
           "checkpoint": run_checkpoint, "rss": run_rss}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="plait-bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", action="append", choices=SUITES,
                        help="run only these suites (repeatable; default: all)")
    parser.add_argument("--depths", type=int, nargs="+", default=[5, 20, 100])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--inner", type=int, default=20, help="calls per timed round")
    parser.add_argument("--quick", action="store_true", help="3 rounds, 5 calls each, 50 MB checkpoint")
    parser.add_argument("--checkpoint-mb", type=int, default=200)
    parser.add_argument("--tmpdir", default=None, help="where checkpoint files are written")
    parser.add_argument("--json", default="bench.json", help="write results here")
    parser.add_argument("--compare", default=None, help="earlier JSON to compare against")
    parser.add_argument("--no-peers", action="store_true", help="skip Flax/Equinox even if installed")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.inner, args.checkpoint_mb = 3, 5, 50
    suites = args.suite or list(SUITES)

    from rich.console import Console
    from rich.progress import Progress

    console = Console()
    compare = json.loads(Path(args.compare).read_text()) if args.compare else None
    report = Report(compare)
    peers = load_peers(args.no_peers)
    console.print(f"peers: {sorted(peers) or 'none installed'}")
    t0 = time.perf_counter()
    with Progress(console=console, transient=True) as progress:
        for suite in suites:
            RUNNERS[suite](args, report, peers, progress)
    report.print(console)

    import jax

    out = {"rows": report.rows, "meta": {
        "python": platform.python_version(), "jax": jax.__version__, "machine": platform.machine(),
        "processor": platform.processor(), "devices": str(jax.devices()), "peers": sorted(peers),
        "args": vars(args), "wall_s": time.perf_counter() - t0}}
    Path(args.json).write_text(json.dumps(out, indent=2))
    console.print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
