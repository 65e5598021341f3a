"""Thread-local module context: the stack of running modules, method interceptors,
intermediate-capture filters and named-call switch; and the method decorators."""

from __future__ import annotations

import contextlib
import functools
import threading
import typing
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from ._module import Module

T = TypeVar("T")
_CallableT = TypeVar("_CallableT", bound=Callable[..., Any])


# --- thread-local context -------------------------------------------------------------


class InterceptorContext(typing.NamedTuple):
    """What an interceptor learns about the intercepted call."""

    module: Any
    method_name: str
    orig_method: Callable[..., Any]


Interceptor = Callable[[Callable[..., Any], tuple, dict, InterceptorContext], Any]


class _Context(threading.local):
    def __init__(self) -> None:
        self.module_stack: list[Any] = [None]
        self.capture_stack: list[Any] = []
        self.interceptor_stack: list[Interceptor] = []
        self.named_call: bool = True


_context = _Context()


def enable_named_call() -> None:
    """Wraps every module method call in a ``jax.named_scope`` (the default)."""
    _context.named_call = True


def disable_named_call() -> None:
    """Stops wrapping module method calls in ``jax.named_scope``."""
    _context.named_call = False


@contextlib.contextmanager
def override_named_call(enable: bool = True) -> Iterator[None]:
    """Context manager turning named scopes for module calls on or off."""
    previous = _context.named_call
    _context.named_call = enable
    try:
        yield
    finally:
        _context.named_call = previous


@contextlib.contextmanager
def intercept_methods(interceptor: Interceptor) -> Iterator[None]:
    """Calls ``interceptor(next_fun, args, kwargs, context)`` around every module method.

    The interceptor decides whether and how to call ``next_fun(*args, **kwargs)``; the most
    recently registered interceptor runs first.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from plait import linen as nn
        >>> class Double(nn.Module):
        ...   def __call__(self, x):
        ...     return 2 * x
        >>> def add_one(next_fun, args, kwargs, context):
        ...   return next_fun(*args, **kwargs) + 1
        >>> with nn.intercept_methods(add_one):
        ...   y = Double().apply({}, jnp.ones(()))
        >>> float(y)
        3.0
    """
    _context.interceptor_stack.append(interceptor)
    try:
        yield
    finally:
        _context.interceptor_stack.pop()


def run_interceptors(
    orig_method: Callable[..., Any], module: Module, *args: Any, **kwargs: Any
) -> Any:
    """Calls ``orig_method(module, *args, **kwargs)`` through the active interceptors."""
    context = InterceptorContext(module, orig_method.__name__, orig_method)

    def call_method(*a: Any, **k: Any) -> Any:
        return orig_method(module, *a, **k)

    fun = call_method
    for interceptor in _context.interceptor_stack:
        fun = functools.partial(_call_interceptor, interceptor, fun, context)
    return fun(*args, **kwargs)


def _call_interceptor(
    interceptor: Interceptor, next_fun: Callable[..., Any], context: Any, *args: Any, **kw: Any
) -> Any:
    return interceptor(next_fun, args, kw, context)


# --- decorators -----------------------------------------------------------------------


def compact[CallableT: Callable[..., Any]](fun: _CallableT) -> _CallableT:
    """Marks the one method of a module that may define submodules and variables inline.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from plait import linen as nn
        >>> class MLP(nn.Module):
        ...   @nn.compact
        ...   def __call__(self, x):
        ...     w = self.param('w', jax.nn.initializers.ones, (x.shape[-1], 2))
        ...     return x @ w
        >>> variables = MLP().init(jax.random.key(0), jnp.ones((1, 3)))
        >>> variables['params']['w'].shape
        (3, 2)
    """
    fun.compact = True  # type: ignore[attr-defined]
    return fun


def nowrap[CallableT: Callable[..., Any]](fun: _CallableT) -> _CallableT:
    """Excludes a helper method from module method wrapping (no setup, no name scope).

    Use it for helpers that must not run ``setup`` or appear as module calls, e.g. a
    method that only computes a shape from hyper-parameters.
    """
    fun.nowrap = True  # type: ignore[attr-defined]
    return fun


def merge_param[T](name: str, a: T | None, b: T | None) -> T:
    """Merges a constructor argument and a call argument: exactly one must be set.

    Examples:
        >>> from plait import linen as nn
        >>> nn.merge_param('deterministic', None, True)
        True
    """
    if a is None and b is None:
        raise ValueError(
            f'Parameter "{name}" must be passed to the constructor or at call time, but '
            "both are None.\nFix: pass it to exactly one of them."
        )
    if a is not None and b is not None:
        raise ValueError(
            f'Parameter "{name}" was passed both to the constructor ({a!r}) and at call '
            f"time ({b!r}).\nFix: pass it to exactly one of them."
        )
    return a if a is not None else b  # type: ignore[return-value]
