"""(b) Graph operations on the depth-100 MLP: split, merge, state filtering, update."""

from __future__ import annotations

from ._mlp import nnx_model

DEPTH = 100


def variants(nnx, prefix: str, depth: int = DEPTH) -> dict:
    model = nnx_model(nnx, depth)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    state = nnx.state(model)

    def split_merge():
        g, p, r = nnx.split(model, nnx.Param, ...)
        return nnx.merge(g, p, r)

    return {
        f"{prefix} split": lambda: nnx.split(model),
        f"{prefix} merge": lambda: nnx.merge(graphdef, params, rest),
        f"{prefix} split+merge": split_merge,
        f"{prefix} state(Param)": lambda: nnx.state(model, nnx.Param),
        f"{prefix} update": lambda: nnx.update(model, state),
    }
