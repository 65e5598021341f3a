"""Timing method: every variant built in one process, timed in interleaved rounds.

A round times each variant once (``inner`` calls in a row, after every variant was
warmed up), in an order that rotates from round to round, so a slow drift of the machine
(other processes, frequency changes) falls on all variants alike. With a floor, each
variant's block of calls is paired with a block of the floor's run right before or right
after it (alternating), and the variant's ratio to the floor is taken against that
adjacent block: on a loaded machine the two blocks of a pair see nearly the same load.
Ratios are taken *per round* and summarised by their median, with the min and max over
the rounds as the spread; a round that was slow for everybody cancels out, where a ratio
of medians would not.
"""

from __future__ import annotations

import dataclasses
import gc
import statistics
import time
from collections.abc import Callable, Mapping, Sequence


@dataclasses.dataclass
class Measurement:
    """Seconds per call of one variant, one entry per round.

    ``floor_ratios`` (when timed against a floor) holds, per round, the variant's time
    over the floor's adjacent block.
    """

    name: str
    seconds: list[float]
    floor_ratios: list[float] | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def summary(self) -> dict[str, float | int]:
        return {"median": self.median, "min": min(self.seconds), "max": max(self.seconds),
                "rounds": len(self.seconds)}


def per_round_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> dict[str, float]:
    """Median, min and max over rounds of ``numerator[r] / denominator[r]``."""
    if len(numerator) != len(denominator) or not numerator:
        raise ValueError(
            f"per_round_ratio needs two equally long, non-empty series of rounds, got "
            f"{len(numerator)} and {len(denominator)} values"
        )
    ratios = [a / b for a, b in zip(numerator, denominator, strict=True)]
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}


def rotation(names: Sequence[str], round_index: int) -> list[str]:
    """The order of round ``round_index``: ``names`` rotated left by the round number."""
    k = round_index % len(names) if names else 0
    return list(names[k:]) + list(names[:k])


def calibrate_inner(fn: Callable[[], object], block: Callable[[object], object],
                    target_s: float, *, max_inner: int = 1000,
                    clock: Callable[[], float] = time.perf_counter) -> int:
    """How many calls of ``fn`` in a row take about ``target_s`` seconds (at least 1)."""
    t0 = clock()
    block(fn())
    once = max(clock() - t0, 1e-7)
    return max(1, min(max_inner, round(target_s / once)))


def interleaved(
    variants: Mapping[str, Callable[[], object]],
    *,
    rounds: int,
    inner: int,
    warmup: int = 3,
    block: Callable[[object], object] = lambda x: x,
    progress: Callable[[], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
    floor: str | None = None,
) -> dict[str, Measurement]:
    """Times each zero-argument callable in ``rounds`` interleaved rounds.

    Args:
      variants: name -> callable; every call is one unit of work (a train step, a split).
      rounds: number of rounds; each round times every variant once (and, with ``floor``,
        the floor once next to each other variant; its round value is their median).
      inner: calls per variant per round; the recorded value is their mean.
      warmup: untimed calls of each variant before the first round (compilation, caches).
      block: waits for the asynchronous result of the last call (``jax.block_until_ready``).
      progress: called after each round.
      clock: the time source (tests pass a fake one).
      floor: the name of the floor variant, for adjacent per-round ratios.

    Returns:
      name -> :class:`Measurement` with one value (seconds per call) per round.

    Example:
      >>> out = interleaved({"a": lambda: 1, "b": lambda: 2}, rounds=3, inner=2, warmup=0)
      >>> [len(m.seconds) for m in out.values()]
      [3, 3]
    """
    if rounds < 1 or inner < 1:
        raise ValueError(f"interleaved needs rounds >= 1 and inner >= 1, got {rounds=} {inner=}")
    for fn in variants.values():
        for _ in range(warmup):
            block(fn())
    if floor is not None and floor not in variants:
        raise ValueError(f"interleaved: the floor {floor!r} is not one of the variants {list(variants)}")

    def timed(fn: Callable[[], object]) -> float:
        out = None
        t0 = clock()
        for _ in range(inner):
            out = fn()
        block(out)
        return (clock() - t0) / inner

    names = list(variants)
    others = [n for n in names if n != floor]
    seconds: dict[str, list[float]] = {n: [] for n in names}
    ratios: dict[str, list[float]] = {n: [] for n in names}
    gc.collect()
    for r in range(rounds):
        if floor is None:
            for name in rotation(names, r):
                seconds[name].append(timed(variants[name]))
        else:
            floor_times = []
            for i, name in enumerate(rotation(others, r)):
                if (r + i) % 2 == 0:
                    base, t = timed(variants[floor]), timed(variants[name])
                else:
                    t, base = timed(variants[name]), timed(variants[floor])
                seconds[name].append(t)
                ratios[name].append(t / base)
                floor_times.append(base)
            if not others:
                floor_times.append(timed(variants[floor]))
            seconds[floor].append(statistics.median(floor_times))
            ratios[floor].append(1.0)
        if progress is not None:
            progress()
    return {n: Measurement(n, seconds[n], ratios[n] if floor is not None else None) for n in names}


def interleaved_once(
    variants: Mapping[str, Callable[[], dict[str, float]]],
    *,
    rounds: int,
    warmup: int = 1,
    progress: Callable[[], None] | None = None,
) -> dict[str, list[dict[str, float]]]:
    """Interleaved rounds of callables that time themselves (compile, checkpoint, RSS).

    Each callable returns a dict of named durations (for example ``{"init": .., "trace":
    .., "compile": ..}``); the result holds one such dict per round and variant.
    """
    if rounds < 1:
        raise ValueError(f"interleaved_once needs rounds >= 1, got {rounds=}")
    for fn in variants.values():
        for _ in range(warmup):
            fn()
    names = list(variants)
    results: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    for r in range(rounds):
        for name in rotation(names, r):
            gc.collect()
            results[name].append(variants[name]())
        if progress is not None:
            progress()
    return results
