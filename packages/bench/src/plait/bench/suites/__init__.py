"""The benchmark suites, in the order ``plait-bench`` runs them; each is ``run(ctx)``."""

from __future__ import annotations

from collections.abc import Callable

from ._common import Context as Context


def _lazy(module: str) -> Callable[[Context], None]:
    def run(ctx: Context) -> None:
        from importlib import import_module

        import_module(f"{__name__}.{module}").run(ctx)

    return run


SUITES: dict[str, Callable[[Context], None]] = {
    "mlp": _lazy("_mlp"),
    "graph": _lazy("_graph"),
    "compile": _lazy("_decoder"),
    "cnn": _lazy("_cnn"),
    "checkpoint": _lazy("_checkpoint"),
    "rss": _lazy("_rss"),
}
