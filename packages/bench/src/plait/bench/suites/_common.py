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
    progress: Callable[[str, int], Callable[[], None]] = lambda description, total: lambda: None


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
) -> None:
    """One row per variant of ``values`` (per-round values, all from the same rounds).

    ``counterparts`` maps a plait variant to ``{peer library: peer variant}``; pairs whose
    peer did not run are left out.
    """
    base = values.get(floor) if floor is not None else None
    for name, series in values.items():
        peers = {lib: (other, values[other])
                 for lib, other in (counterparts or {}).get(name, {}).items() if other in values}
        ctx.report.add(suite, case, name, values=series, unit=unit, floor=base, peers=peers,
                       **dict((extras or {}).get(name, {})))
