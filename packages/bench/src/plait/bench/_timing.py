"""Timing method: every variant built in one process, timed in interleaved rounds.

A round times each variant once (``inner`` calls, after the variants were warmed up), in
a rotating order, so slow drifts of the machine (thermal, other processes) hit all
variants alike. The ratio to the floor is taken per round, then summarised by its median;
min and max show the spread.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable


@dataclasses.dataclass
class Measurement:
    name: str
    seconds: list[float]  # per call, one entry per round
    ratios: list[float] | None = None  # to the floor, per round

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def summary(self) -> dict:
        out = {"median_s": self.median, "min_s": min(self.seconds), "max_s": max(self.seconds),
               "rounds": len(self.seconds)}
        if self.ratios:
            out.update(ratio_median=statistics.median(self.ratios), ratio_min=min(self.ratios),
                       ratio_max=max(self.ratios))
        return out


def interleaved(
    variants: dict[str, Callable[[], object]],
    *,
    floor: str | None,
    rounds: int = 7,
    inner: int = 20,
    warmup: int = 3,
    block: Callable[[object], object] = lambda x: x,
    progress: Callable[[], None] | None = None,
) -> dict[str, Measurement]:
    """Time each zero-argument callable; ``block`` waits for asynchronous results."""
    for fn in variants.values():
        for _ in range(warmup):
            block(fn())
    names = list(variants)
    seconds: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            fn = variants[name]
            t0 = time.perf_counter()
            for _ in range(inner):
                out = fn()
            block(out)
            seconds[name].append((time.perf_counter() - t0) / inner)
        if progress:
            progress()
    result = {n: Measurement(n, seconds[n]) for n in names}
    if floor is not None:
        base = seconds[floor]
        for n in names:
            result[n].ratios = [s / b for s, b in zip(seconds[n], base)]
    return result


def once(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0
