"""``plait-bench --profile``: cProfile of the MLP train steps (where the Python time goes)."""

from __future__ import annotations

import cProfile
import io
import pstats
from typing import Any

import jax


def profile_steps(depth: int, opt: str, peers: Any, *, only: tuple[str, ...] = (),
                  calls: int = 200, top: int = 12) -> str:
    """Profiles ``calls`` steps of the nnx / Equinox variants of the MLP suite.

    ``only`` keeps the variants whose name contains one of its words. Returns the
    ``pstats`` report (sorted by own time) as text.
    """
    from .suites import _mlp

    builders = {name: build for name, build in _mlp.variants(depth, opt, peers).items()
                if ("nnx" in name or "equinox" in name)
                and (not only or any(word in name for word in only))}
    out = io.StringIO()
    for name, build in builders.items():
        step = build()
        for _ in range(3):
            jax.block_until_ready(step())
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(calls):
            result = step()
        jax.block_until_ready(result)
        profiler.disable()
        out.write(f"\n=== {name}: depth={depth} {opt}, {calls} calls ===\n")
        stats = pstats.Stats(profiler, stream=out)
        stats.strip_dirs().sort_stats("tottime").print_stats(top)
    return out.getvalue()
