"""``plait-bench``: measure plait against a hand-written JAX floor and against its peers.

    plait-bench                           # every suite; tables on the terminal, JSON in bench.json
    plait-bench --suite mlp --depths 5 100
    plait-bench --quick                   # fewer rounds, 50 MB checkpoint
    plait-bench --compare old.json        # show the change against an earlier run

Suites: mlp (train-step cost at depth 5/20/100, SGD and Adam), graph (split / merge /
state / update at depth 100), compile (init, trace and compile of a 4-layer decoder),
cnn (a compute-bound step), checkpoint (~200 MB save / restore vs numpy), rss (peak
resident memory per variant). Peers (Flax, Equinox) run too when importable
(``plait-bench[peers]``). Columns: "x floor" is the variant's time over the floor's,
"x flax" / "x equinox" plait's time over the peer's, both taken per round (median);
below 1 is faster.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

SUITE_NAMES = ("mlp", "graph", "compile", "cnn", "checkpoint", "rss")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plait-bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", action="append", choices=SUITE_NAMES,
                        help="run only this suite (repeatable; default: all)")
    parser.add_argument("--depths", type=int, nargs="+", default=None,
                        help="MLP depths (default: 5 20 100)")
    parser.add_argument("--optimizers", nargs="+", choices=("sgd", "adam"), default=["sgd", "adam"],
                        help="MLP optimizers (default: sgd adam)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="timed rounds (default 15; --quick 5); compile, checkpoint and "
                             "cnn run a third / a half of them")
    parser.add_argument("--target-ms", type=float, default=50.0,
                        help="time each variant runs in a row per round (calls calibrated on the floor)")
    parser.add_argument("--quick", action="store_true", help="5 rounds, 50 MB checkpoint")
    parser.add_argument("--tiny", action="store_true",
                        help="tiny models everywhere (a smoke test, not a measurement)")
    parser.add_argument("--checkpoint-mb", type=int, default=None, help="checkpoint size (default 200)")
    parser.add_argument("--tmpdir", default=None, help="where checkpoint files are written")
    parser.add_argument("--json", default="bench.json", help="write the results here")
    parser.add_argument("--compare", default=None, help="an earlier JSON to compare against")
    parser.add_argument("--markdown", default=None, help="also write the tables as Markdown here")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile the nnx / Equinox MLP steps at the first depth and print "
                             "the top functions (no measuring)")
    parser.add_argument("--render", default=None, metavar="JSON",
                        help="print the tables of a saved run (no measuring)")
    parser.add_argument("--only", action="append", default=[], metavar="WORD",
                        help="mlp / compile / cnn: run only the variants whose name contains WORD "
                             "(repeatable; the floor always runs)")
    parser.add_argument("--no-peers", action="store_true", help="skip Flax and Equinox even if installed")
    return parser


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    quick = args.quick or args.tiny
    return {
        "rounds": args.rounds or (3 if args.tiny else 5 if quick else 15),
        "warmup": 1 if args.tiny else 3,
        "target_s": (0.002 if args.tiny else args.target_ms / 1e3),
        "depths": args.depths or ([2] if args.tiny else [5, 20, 100]),
        "optimizers": list(dict.fromkeys(args.optimizers)),
        "tiny": args.tiny,
        "checkpoint_mb": args.checkpoint_mb or (4 if args.tiny else 50 if quick else 200),
        "tmpdir": args.tmpdir,
        "only": list(args.only),
    }


def _meta(args: argparse.Namespace, settings: dict[str, Any], peers: Any, wall_s: float,
          load_before: tuple[float, ...]) -> dict[str, Any]:
    import jax

    from ._peers import versions

    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "python": platform.python_version(), "platform": platform.platform(),
        "machine": platform.machine(), "cpu_count": os.cpu_count(),
        "load_average_before": list(load_before), "load_average_after": list(os.getloadavg()),
        "devices": [str(d) for d in jax.devices()], "versions": versions(),
        "peers": peers.names, "settings": settings, "argv": sys.argv[1:], "wall_s": wall_s,
    }


def _show(report: Any, console: Any, markdown: str | None) -> None:
    for table in report.tables():
        console.print(table)
    if markdown:
        Path(markdown).write_text(report.markdown())
        console.print(f"markdown tables written to {markdown}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = _settings(args)
    suites = list(dict.fromkeys(args.suite or SUITE_NAMES))

    import json

    from rich.console import Console
    from rich.progress import Progress

    from ._peers import Peers, load_peers
    from ._report import Report
    from .suites import SUITES, Context

    console = Console(width=None if sys.stdout.isatty() else 200)
    compare = json.loads(Path(args.compare).read_text()) if args.compare else None
    if args.render:
        report = Report.from_json(json.loads(Path(args.render).read_text()))
        report.compare = Report(compare).compare
        _show(report, console, args.markdown)
        return 0
    report = Report(compare)
    peers = Peers() if args.no_peers else load_peers()
    if args.profile:
        from ._profile import profile_steps

        for opt in settings["optimizers"]:
            console.print(profile_steps(settings["depths"][0], opt, peers,
                                        only=tuple(settings["only"])),
                          markup=False, highlight=False)
        return 0
    console.print(f"plait-bench: suites {suites}; peers: {peers.names or 'none installed'}; "
                  f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    with Progress(console=console, transient=True) as progress:
        def track(description: str, total: int):
            task = progress.add_task(description, total=total)
            return lambda: progress.advance(task)

        ctx = Context(report=report, peers=peers, progress=track, **settings)
        for suite in suites:
            SUITES[suite](ctx)
    _show(report, console, args.markdown)
    report.write(args.json, _meta(args, settings, peers, time.perf_counter() - t0, load_before))
    console.print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
