"""The functional entry points: ``init``, ``init_with_output`` and ``apply``.

Each builds a root :class:`Scope`, binds a copy of the module to it, runs the function and
invalidates the scope (so a bound module leaked out of the call cannot be used by mistake).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from ._context import _context
from ._filters import DENY_INTERMEDIATES, CollectionFilter, in_filter
from ._module import Module
from ._scope import Scope, check_variables, copy_structure, normalize_rngs


def _make_root(
    variables: Mapping[str, Any],
    rngs: dict[str, Any],
    mutable: CollectionFilter,
    flags: dict[str, Any],
) -> Scope:
    # Mutable collections are copied so that writes never touch the caller's dicts.
    owned = {
        col: copy_structure(tree) if in_filter(mutable, col) else tree
        for col, tree in variables.items()
    }
    return Scope(owned, rngs, mutable, flags=flags)


def _capture_filter(capture: bool | Callable[[Module, str], bool]) -> Any:
    if capture is True:
        return lambda module, method_name: method_name == "__call__"
    return capture or None


def _run_bound(
    fn: Callable[..., Any],
    module: Module,
    root: Scope,
    capture: bool | Callable[[Module, str], bool],
    args: tuple,
    kwargs: dict,
) -> Any:
    _context.capture_stack.append(_capture_filter(capture))
    try:
        bound = module.clone(parent=root, _deep_clone=True)
        return fn(bound, *args, **kwargs)
    finally:
        _context.capture_stack.pop()
        root.invalidate()


def apply(
    fn: Callable[..., Any],
    module: Module,
    mutable: CollectionFilter = False,
    capture_intermediates: bool | Callable[[Module, str], bool] = False,
) -> Callable[..., Any]:
    """Turns ``fn(bound_module, *args)`` into ``f(variables, *args, rngs=None)``.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from plait import linen as nn
        >>> class Scale(nn.Module):
        ...   @nn.compact
        ...   def __call__(self, x):
        ...     return x * self.param('s', jax.nn.initializers.ones, ())
        >>> variables = Scale().init(jax.random.key(0), 1.0)
        >>> double = nn.apply(lambda m, x: 2 * m(x), Scale())
        >>> float(double(variables, 3.0))
        6.0
    """

    @functools.wraps(fn)
    def scope_fn(variables: Mapping[str, Any], *args: Any, rngs: Any = None, **kwargs: Any):
        check_variables(variables)
        root = _make_root(variables, normalize_rngs(rngs, where="apply"), mutable, {})
        y = _run_bound(fn, module, root, capture_intermediates, args, kwargs)
        if mutable is not False:
            return y, root.mutable_variables()
        return y

    return scope_fn


def init_with_output(
    fn: Callable[..., Any],
    module: Module,
    mutable: CollectionFilter = DENY_INTERMEDIATES,
    capture_intermediates: bool | Callable[[Module, str], bool] = False,
) -> Callable[..., tuple[Any, dict[str, Any]]]:
    """Turns ``fn(bound_module, *args)`` into ``f(rngs, *args) -> (output, variables)``."""

    @functools.wraps(fn)
    def scope_fn(rngs: Any, *args: Any, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        root = _make_root({}, normalize_rngs(rngs, where="init"), mutable, {"initializing": True})
        y = _run_bound(fn, module, root, capture_intermediates, args, kwargs)
        return y, root.mutable_variables()

    return scope_fn


def init(
    fn: Callable[..., Any],
    module: Module,
    mutable: CollectionFilter = DENY_INTERMEDIATES,
    capture_intermediates: bool | Callable[[Module, str], bool] = False,
) -> Callable[..., dict[str, Any]]:
    """Turns ``fn(bound_module, *args)`` into ``f(rngs, *args) -> variables``."""
    with_output = init_with_output(fn, module, mutable, capture_intermediates)

    @functools.wraps(fn)
    def scope_fn(rngs: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return with_output(rngs, *args, **kwargs)[1]

    return scope_fn
