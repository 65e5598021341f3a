"""Which modules are running: the bridge.Module stack, and the Linen module stack.

``bridge.compact`` pushes a :class:`ModuleStackEntry` so that modules created inside a
compact method are named (``Dense_0``, ``Dense_1``...) and attached to their parent, as in
Linen. ``ToNNX`` reads the innermost bridge or Linen module to inherit its ``mutable``
setting when it is called from inside one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from plait import linen


@dataclasses.dataclass
class ModuleStackEntry:
    """One running bridge.Module method: the module, whether it is compact, and how many
    submodules of each type it has created so far (for automatic names)."""

    module: Any
    in_compact: bool
    type_counter: defaultdict[type, int] = dataclasses.field(
        default_factory=lambda: defaultdict(int)
    )


@dataclasses.dataclass
class ModuleContext(threading.local):
    """The per-thread stack of running bridge.Module methods (``None`` at the bottom)."""

    module_stack: list[ModuleStackEntry | None] = dataclasses.field(default_factory=lambda: [None])


MODULE_CONTEXT = ModuleContext()


def current_context() -> ModuleStackEntry | None:
    """The innermost running bridge.Module method, or None.

    Examples:
        >>> from plait import bridge
        >>> bridge.current_context() is None
        True
    """
    return MODULE_CONTEXT.module_stack[-1]


def current_module() -> Any:
    """The bridge.Module whose method is running innermost, or None.

    Examples:
        >>> from plait import bridge
        >>> bridge.current_module() is None
        True
    """
    entry = current_context()
    return None if entry is None else entry.module


current_bridge_module = current_module


def _linen_module_stack() -> list[Any]:
    # plait.linen keeps its module stack in a private thread-local and exports no accessor;
    # this is the one place the bridge reads (and, in `nnx_code_in`, pushes on) it.
    from plait.linen._context import _context

    return _context.module_stack


class _Hosts(threading.local):
    def __init__(self) -> None:
        self.entries: list[tuple[Any, int]] = []


_hosts = _Hosts()


@contextlib.contextmanager
def nnx_code_in(host: linen.Module) -> Iterator[None]:
    """Runs NNX code on behalf of the Linen module ``host`` (a ``ToLinen``).

    Linen modules constructed by that code (e.g. by a ``ToNNX`` inside the NNX module)
    must not become submodules of ``host``: Linen's module stack gets a ``None`` on top
    while it runs, and :func:`current_linen_module` still reports ``host``.
    """
    stack = _linen_module_stack()
    stack.append(None)
    _hosts.entries.append((host, len(stack)))
    try:
        yield
    finally:
        _hosts.entries.pop()
        stack.pop()


def current_linen_module() -> linen.Module | None:
    """The Linen module whose method is running innermost, or None.

    Examples:
        >>> from plait.bridge.wrappers import current_linen_module
        >>> current_linen_module() is None
        True
    """
    stack = _linen_module_stack()
    top = stack[-1] if stack else None
    if isinstance(top, linen.Module):
        return top
    if _hosts.entries and _hosts.entries[-1][1] == len(stack):
        return _hosts.entries[-1][0]
    return None
