"""(b) Graph operations on the depth-100 MLP of (a): split, merge, state filtering, update.

The same calls run on ``plait.nnx`` and ``flax.nnx``. Equinox has no object graph; its
nearest operations are shown for reference: ``eqx.partition`` (split), ``eqx.combine``
(merge), ``eqx.filter`` (state filtering); it has no in-place update.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

from .._timing import calibrate_inner, interleaved
from ._common import Context, add_rows
from ._mlp import equinox_model, nnx_model

DEPTH = 100
OPS = ("split", "merge", "split+merge", "state(Param)", "update")


def nnx_ops(nnx: ModuleType, depth: int) -> dict[str, Callable[[], Any]]:
    model = nnx_model(nnx, depth)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    state = nnx.state(model)

    def split_merge():
        g, p, r = nnx.split(model, nnx.Param, ...)
        return nnx.merge(g, p, r)

    return {
        "split": lambda: nnx.split(model, nnx.Param, ...),
        "merge": lambda: nnx.merge(graphdef, params, rest),
        "split+merge": split_merge,
        "state(Param)": lambda: nnx.state(model, nnx.Param),
        "update": lambda: nnx.update(model, state),
    }


def equinox_ops(eqx: ModuleType, depth: int) -> dict[str, Callable[[], Any]]:
    model, _ = equinox_model(eqx, depth)
    arrays, static = eqx.partition(model, eqx.is_array)

    def partition_combine():
        a, s = eqx.partition(model, eqx.is_array)
        return eqx.combine(a, s)

    return {
        "split": lambda: eqx.partition(model, eqx.is_array),
        "merge": lambda: eqx.combine(arrays, static),
        "split+merge": partition_combine,
        "state(Param)": lambda: eqx.filter(model, eqx.is_inexact_array),
    }


EQUINOX_ANALOG = {"split": "eqx.partition", "merge": "eqx.combine",
                  "split+merge": "eqx.partition+combine", "state(Param)": "eqx.filter"}


def run(ctx: Context) -> None:
    depth = 2 if ctx.tiny else DEPTH
    from plait import nnx

    libraries: dict[str, dict[str, Callable[[], Any]]] = {"plait": nnx_ops(nnx, depth)}
    if ctx.peers.flax_nnx is not None:
        libraries["flax"] = nnx_ops(ctx.peers.flax_nnx, depth)
    if ctx.peers.equinox is not None:
        libraries["equinox"] = equinox_ops(ctx.peers.equinox, depth)
    fns = {f"{lib} {op}": fn for lib, ops in libraries.items() for op, fn in ops.items()}
    advance = ctx.progress(f"graph ops depth={depth}", ctx.rounds)
    # About target_s per variant and round, calibrated on plait's split+merge.
    inner = calibrate_inner(libraries["plait"]["split+merge"], lambda x: x, ctx.target_s / 2)
    res = interleaved(fns, rounds=ctx.rounds, inner=inner, warmup=ctx.warmup, progress=advance)
    for op in OPS:
        values = {_label(lib, op): res[f"{lib} {op}"].seconds
                  for lib in libraries if f"{lib} {op}" in res}
        counterparts = {"plait": {lib: _label(lib, op) for lib in libraries
                                  if lib != "plait" and _label(lib, op) in values}}
        add_rows(ctx, "graph", f"{op} depth={depth}", values, unit="ms", floor=None,
                 counterparts=counterparts)


def _label(lib: str, op: str) -> str:
    return f"equinox ({EQUINOX_ANALOG[op]})" if lib == "equinox" and op in EQUINOX_ANALOG else lib
