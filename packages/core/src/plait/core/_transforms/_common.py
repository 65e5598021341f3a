"""Small helpers shared by the transform modules (argument normalisation, wrappers)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .._variable import MISSING

__all__ = [
    "MISSING",
    "normalize_argnums",
    "normalize_argnames",
    "resolve_kwargs",
    "shift_prefix",
    "signature_of",
    "unbind",
    "wraps",
]


def unbind(fun: Callable[..., Any]) -> tuple[Callable[..., Any], Any]:
    """``(function, self)`` for a bound method of a graph node, else ``(fun, None)``.

    Transforms pass the object as an explicit first argument instead of letting the
    function close over it, so its state is lifted (and updates written back) like any
    other argument's.
    """
    from .._lift import is_lift_leaf

    if inspect.ismethod(fun) and is_lift_leaf(fun.__self__):
        return fun.__func__, fun.__self__
    return fun, None


def shift_prefix(prefix: Any, first: Any) -> Any:
    """A positional prefix with an entry for a prepended ``self`` argument."""
    if isinstance(prefix, (tuple, list)):
        return (first, *prefix)
    return prefix


def normalize_argnums(argnums: int | Sequence[int] | None) -> tuple[int, ...]:
    if argnums is None:
        return ()
    if isinstance(argnums, int):
        return (argnums,)
    return tuple(argnums)


def normalize_argnames(argnames: str | Iterable[str] | None) -> tuple[str, ...]:
    if argnames is None:
        return ()
    if isinstance(argnames, str):
        return (argnames,)
    return tuple(argnames)


@functools.lru_cache(maxsize=512)
def _signature(fun: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(fun)
    except (TypeError, ValueError):
        return None


def signature_of(fun: Callable[..., Any]) -> inspect.Signature | None:
    """``inspect.signature`` of ``fun`` (cached), or None when it has none."""
    try:
        return _signature(fun)
    except TypeError:  # unhashable callable
        try:
            return inspect.signature(fun)
        except (TypeError, ValueError):
            return None


def resolve_kwargs(fun: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Binds keyword arguments to their positions, so positional prefixes apply to them.

    Keyword-only parameters and ``**kwargs`` cannot be positional: passing such arguments to
    a transform whose prefixes are positional (vmap, scan, grad) is an error.
    """
    if not kwargs:
        return args
    sig = signature_of(fun)
    if sig is None:
        raise TypeError(
            f"Cannot bind keyword arguments {sorted(kwargs)} of {fun!r} to positions: it has no "
            "inspectable signature. Fix: pass them positionally."
        )
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError as e:
        raise TypeError(f"{getattr(fun, '__name__', fun)}: {e}") from None
    bound.apply_defaults()
    if bound.kwargs:
        raise TypeError(
            f"Keyword-only arguments {sorted(bound.kwargs)} of {getattr(fun, '__name__', fun)} "
            "cannot be mapped by this transform, whose axes/argnums are positional. Fix: make "
            "them positional-or-keyword parameters, or pass them positionally."
        )
    return tuple(bound.args)


def wraps(fun: Callable[..., Any], wrapper: Callable[..., Any]) -> Callable[..., Any]:
    """``functools.update_wrapper`` that tolerates callables without ``__name__``."""
    try:
        functools.update_wrapper(wrapper, fun)
    except (AttributeError, TypeError):
        pass
    return wrapper
