"""What every suite gets (:class:`Context`) and how it turns timings into report rows."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

from .._peers import Peers
from .._report import Report

FLOOR = "floor (jax.jit)"


@dataclasses.dataclass
class Context:
    """The options of one ``plait-bench`` run, as the suites see them.

    ``target_s`` is how long each variant runs in a row per round (the number of calls is
    calibrated on the floor); ``tiny`` shrinks every model so a smoke test runs in seconds.
    """

    report: Report
    peers: Peers
    rounds: int = 15
    warmup: int = 3
    target_s: float = 0.05
    depths: Sequence[int] = (5, 20, 100)
    optimizers: Sequence[str] = ("sgd", "adam")
    tiny: bool = False
    checkpoint_mb: int = 200
    tmpdir: str | None = None
    only: Sequence[str] = ()
    progress: Callable[[str, int], Callable[[], None]] = lambda description, total: lambda: None


def select[T](ctx: Context, variants: Mapping[str, T]) -> dict[str, T]:
    """The variants named by ``--only`` (substrings; the floor is always kept)."""
    if not ctx.only:
        return dict(variants)
    return {name: v for name, v in variants.items()
            if name.startswith("floor") or any(word in name for word in ctx.only)}


def add_rows(
    ctx: Context,
    suite: str,
    case: str,
    values: Mapping[str, list[float]],
    *,
    unit: str,
    floor: str | None = FLOOR,
    counterparts: Mapping[str, Mapping[str, str]] | None = None,
    extras: Mapping[str, Mapping[str, object]] | None = None,
    floor_ratios: Mapping[str, list[float]] | None = None,
) -> None:
    """One row per variant of ``values`` (per-round values, all from the same rounds).

    ``counterparts`` maps a plait variant to ``{peer library: peer variant}``; pairs whose
    peer did not run are left out. ``floor_ratios`` (from :func:`interleaved` with a
    floor) are the per-round ratios to the adjacent floor block; with them, plait's ratio
    to a peer is the ratio of the two variants' floor ratios in the same round.
    """
    base = values.get(floor) if floor is not None else None
    for name, series in values.items():
        pairs = {lib: other for lib, other in (counterparts or {}).get(name, {}).items()
                 if other in values}
        if floor_ratios is not None:
            peers = {lib: (other, floor_ratios[other]) for lib, other in pairs.items()}
            ctx.report.add(suite, case, name, values=series, unit=unit, peers=peers,
                           floor_ratios=floor_ratios[name], **dict((extras or {}).get(name, {})))
        else:
            peers = {lib: (other, values[other]) for lib, other in pairs.items()}
            ctx.report.add(suite, case, name, values=series, unit=unit, floor=base, peers=peers,
                           **dict((extras or {}).get(name, {})))
