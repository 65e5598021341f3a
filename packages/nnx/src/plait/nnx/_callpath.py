"""Which Modules are being called right now, so errors can name a module's path.

A Module does not know where it sits in a model (Flax NNX has no parent pointers). Module
wraps each subclass ``__call__`` in a push/pop on a thread-local stack; when an error is
built, the path of the innermost module is searched from the outermost one. The search
runs only on the error path, so a normal call costs one list append and one pop.
"""

from __future__ import annotations

import threading
from typing import Any

_local = threading.local()


def stack() -> list[Any]:
    calls = getattr(_local, "calls", None)
    if calls is None:
        calls = _local.calls = []
    return calls


def format_path(root_name: str, path: tuple[Any, ...]) -> str:
    """``('layers', 0, 'linear')`` -> ``Model.layers[0].linear``."""
    text = root_name
    for key in path:
        text += f"[{key}]" if isinstance(key, int) else f".{key}"
    return text


def module_path(module: Any) -> str:
    """Readable path of ``module`` from the outermost Module being called.

    Falls back to the type name when ``module`` is called on its own or cannot be found
    (for example when it is reachable only through a plain Python closure).
    """
    calls = stack()
    name = type(module).__name__
    if not calls or calls[0] is module:
        return name
    root = calls[0]
    from plait.core import iter_graph

    try:
        for path, node in iter_graph(root):
            if node is module:
                return format_path(type(root).__name__, tuple(path)) + f" ({name})"
    except Exception:  # a half-built graph must never hide the user's real error
        return name
    return name
