"""Result rows: one per (suite, case, variant); printed as tables and saved as JSON.

A row holds the variant's median and spread (values in seconds, or MB for memory), its
per-round ratio to the floor (``floor``) and, for plait variants, its per-round ratio to
the matching peer variants (``vs``: ``{"flax": {"against": "flax nnx.jit", "median":
..}}``). A ratio below 1 means faster (or smaller) than the other side.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._timing import per_round_ratio

# "same layout": a hand-written step over the variables as the API lays them out (Linen's
# nested collections), so the ratio isolates the framework from the pytree shape it implies.
PEER_LIBRARIES = ("flax", "equinox", "same layout")
_SCALE = {"ms": 1e3, "us": 1e6, "s": 1.0, "MB": 1.0, "MB/s": 1.0}


class Report:
    """Collects rows; ``compare`` is an earlier run's JSON (``--compare``)."""

    def __init__(self, compare: Mapping[str, Any] | None = None):
        self.rows: list[dict[str, Any]] = []
        self.compare = {_key(r): r for r in (compare or {}).get("rows", [])}

    def add(self, suite: str, case: str, variant: str, *, values: list[float], unit: str,
            floor: list[float] | None = None, peers: Mapping[str, tuple[str, list[float]]] | None = None,
            floor_ratios: list[float] | None = None, **extra: Any) -> dict[str, Any]:
        """Adds a row from per-round ``values``.

        Args:
          suite, case, variant: what was measured.
          values: one value per round (seconds, or MB).
          unit: the display unit (``ms``, ``s``, ``MB``...); values stay in seconds / MB.
          floor: the floor's per-round values, for the ratio to the floor.
          peers: library -> (peer variant name, per-round denominators), for plait rows;
            with ``floor_ratios`` the denominators are the peer's floor ratios.
          floor_ratios: per-round ratios to the floor measured next to the variant
            (replaces ``floor``).
          extra: further JSON-serializable fields (trace seconds, throughput...).
        """
        row: dict[str, Any] = {
            "suite": suite, "case": case, "variant": variant, "unit": unit,
            "median": statistics.median(values), "min": min(values), "max": max(values),
            "rounds": len(values), "values": list(values),
        }
        if floor_ratios is not None:
            row["floor"] = per_round_ratio(floor_ratios, [1.0] * len(floor_ratios))
        elif floor is not None:
            row["floor"] = per_round_ratio(values, floor)
        numerator = floor_ratios if floor_ratios is not None else values
        if peers:
            row["vs"] = {lib: {"against": name, **per_round_ratio(numerator, other)}
                         for lib, (name, other) in peers.items()}
        row.update(extra)
        self.rows.append(row)
        return row

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Report:
        """A report holding the rows of a saved run (``--render``)."""
        report = cls()
        report.rows = [dict(r) for r in data.get("rows", [])]
        return report

    def to_json(self, meta: Mapping[str, Any]) -> str:
        return json.dumps({"meta": dict(meta), "rows": self.rows}, indent=1)

    def write(self, path: str | Path, meta: Mapping[str, Any]) -> None:
        Path(path).write_text(self.to_json(meta))

    # -- tables -------------------------------------------------------------------------

    def grids(self) -> list[tuple[str, list[str], list[list[str]]]]:
        """``(suite, headers, cells)`` per suite, in the order the suites ran."""
        out = []
        for suite in dict.fromkeys(r["suite"] for r in self.rows):
            rows = [r for r in self.rows if r["suite"] == suite]
            peer_libs = [lib for lib in PEER_LIBRARIES if any(lib in r.get("vs", {}) for r in rows)]
            headers = ["case", "variant", "median", "min-max", "x floor (min-max)"]
            headers += [f"x {lib}" for lib in peer_libs]
            if self.compare:
                headers.append("vs previous")
            cells = []
            for r in rows:
                line = [r["case"], r["variant"], _value(r["median"], r["unit"]),
                        f"{_num(r['min'], r['unit'])}-{_num(r['max'], r['unit'])}",
                        _ratio(r.get("floor"))]
                line += [_ratio(r.get("vs", {}).get(lib), short=True) for lib in peer_libs]
                if self.compare:
                    line.append(self._delta(r))
                cells.append(line)
            out.append((suite, headers, cells))
        return out

    def tables(self) -> list[Any]:
        """One ``rich.table.Table`` per suite (for the terminal)."""
        from rich.table import Table

        out = []
        for suite, headers, cells in self.grids():
            table = Table(title=f"plait-bench: {suite}", title_justify="left")
            for i, header in enumerate(headers):
                table.add_column(header, justify="left" if i < 2 else "right")
            for line in cells:
                table.add_row(*line)
            out.append(table)
        return out

    def markdown(self) -> str:
        """The same tables as Markdown (for a README)."""
        parts = []
        for suite, headers, cells in self.grids():
            lines = [f"**{suite}**", "", "| " + " | ".join(headers) + " |",
                     "|" + "|".join(["---", "---"] + ["---:"] * (len(headers) - 2)) + "|"]
            lines += ["| " + " | ".join(line) + " |" for line in cells]
            parts.append("\n".join(lines))
        return "\n\n".join(parts) + "\n"

    def _delta(self, row: Mapping[str, Any]) -> str:
        prev = self.compare.get(_key(row))
        if not prev or not prev.get("median"):
            return "new"
        text = f"{(row['median'] / prev['median'] - 1) * 100:+.1f}%"
        if "floor" in row and "floor" in prev:
            text += f" (x floor {prev['floor']['median']:.2f}->{row['floor']['median']:.2f})"
        return text


def _key(row: Mapping[str, Any]) -> tuple[str, str, str]:
    return row["suite"], row["case"], row["variant"]


def _num(value: float, unit: str) -> str:
    v = value * _SCALE.get(unit, 1.0)
    return f"{v:.3g}" if v < 100 else f"{v:.0f}"


def _value(value: float, unit: str) -> str:
    return f"{_num(value, unit)} {unit}"


def _ratio(ratio: Mapping[str, Any] | None, short: bool = False) -> str:
    if not ratio:
        return ""
    if short:
        return f"{ratio['median']:.2f}"
    return f"{ratio['median']:.2f} ({ratio['min']:.2f}-{ratio['max']:.2f})"
