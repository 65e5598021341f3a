"""Global defaults of ``graph=`` and ``graph_updates=``: :class:`set_graph_mode`, :class:`set_graph_updates`.

Each is a stack of booleans whose top is the default that an argument left as ``None``
resolves to; ``_resolve_graph`` / ``_resolve_graph_updates`` are the only readers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any


class _ModeSwitch:
    """A boolean default kept on a per-class stack.

    Takes effect when created; use it as a context manager (restores on exit), as a
    decorator (applies during each call), or call it once to change the default.
    """

    _stack: list[bool]

    def __init__(self, value: bool, /):
        self.value = bool(value)
        self._stack.append(self.value)

    @classmethod
    def get_default(cls) -> bool:
        return cls._stack[-1]

    @classmethod
    def get_stack(cls) -> list[bool]:
        return cls._stack

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.pop()

    def __call__(self, f: Callable[..., Any]) -> Callable[..., Any]:
        self._stack.pop()  # as a decorator it applies per call, not from creation
        value = self.value
        stack = self._stack

        @functools.wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            stack.append(value)
            try:
                return f(*args, **kwargs)
            finally:
                stack.pop()

        return wrapper


class set_graph_mode(_ModeSwitch):  # noqa: N801 - Flax's name
    """Sets the default of ``graph=`` (True: graph mode, False: tree mode).

    Examples:
        >>> from plait.core import set_graph_mode
        >>> set_graph_mode.get_default()
        True
        >>> with set_graph_mode(False):
        ...     set_graph_mode.get_default()
        False
    """

    _stack: list[bool] = [True]


class set_graph_updates(_ModeSwitch):  # noqa: N801 - Flax's name
    """Sets the default of the transforms' ``graph_updates=`` (propagate structural changes).

    ``True`` (the default): attributes added, removed or replaced inside a transform are
    applied to the caller's objects afterwards. ``False``: only Variable values flow back.

    Examples:
        >>> from plait.core import set_graph_updates
        >>> set_graph_updates.get_default()
        True
        >>> with set_graph_updates(False):
        ...     set_graph_updates.get_default()
        False
    """

    _stack: list[bool] = [True]


def _resolve_graph(graph: bool | None) -> bool:
    return set_graph_mode._stack[-1] if graph is None else bool(graph)


def _resolve_graph_updates(graph_updates: bool | None) -> bool:
    return set_graph_updates._stack[-1] if graph_updates is None else bool(graph_updates)
