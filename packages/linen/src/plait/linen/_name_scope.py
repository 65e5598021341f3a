"""Scope sharing and compact name scopes."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from ._context import compact
from ._errors import CallShareScopeOnUnboundModuleError, NameInUseError
from ._module import Module
from ._scope import Scope

_CallableT = TypeVar("_CallableT", bound=Callable[..., Any])


def _is_descendant(scope: Scope, ancestor: Scope) -> bool:
    node: Scope | None = scope
    while node is not None:
        if node is ancestor:
            return True
        node = node.parent
    return False


def share_scope(module: Module, other: Module, /) -> None:
    """Makes ``other`` use ``module``'s scope (so their variables live side by side).

    Use it in ``setup`` to wrap a module without adding a level to the parameter tree.
    If ``module`` is itself inside ``other``, ``module`` takes ``other``'s scope instead.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from plait import linen as nn
        >>> class Inner(nn.Module):
        ...   @nn.compact
        ...   def __call__(self, x):
        ...     return x * self.param('w', jax.nn.initializers.ones, ())
        >>> class Wrapper(nn.Module):
        ...   def setup(self):
        ...     self.inner = Inner()
        ...     nn.share_scope(self, self.inner)
        ...   def __call__(self, x):
        ...     return self.inner(x)
        >>> jax.tree.map(jnp.shape, Wrapper().init(jax.random.key(0), 1.0))
        {'params': {'w': ()}}
    """
    if module.scope is None or other.scope is None:
        raise CallShareScopeOnUnboundModuleError()
    if _is_descendant(module.scope, other.scope) and module.scope is not other.scope:
        object.__setattr__(module, "scope", other.scope)
    else:
        object.__setattr__(other, "scope", module.scope)


class CompactNameScope(Module):
    """Runs a method under its own name scope (see :func:`compact_name_scope`)."""

    fn: Callable[..., Any]
    module_fn: Callable[[], Module]

    @compact
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(self.module_fn(), *args, **kwargs)


def compact_name_scope[CallableT: Callable[..., Any]](fun: _CallableT) -> _CallableT:
    """Gives a method its own name scope: submodules it creates live under its name.

    Several methods of one module can use it, which lifts the one-``@compact``-method rule.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from plait import linen as nn
        >>> class Scaled(nn.Module):
        ...   @nn.compact
        ...   def __call__(self, x):
        ...     return x * self.param('w', jax.nn.initializers.ones, ())
        >>> class AutoEncoder(nn.Module):
        ...   @nn.compact_name_scope
        ...   def encode(self, x):
        ...     return Scaled()(x)
        ...   @nn.compact_name_scope
        ...   def decode(self, x):
        ...     return Scaled()(x)
        ...   def __call__(self, x):
        ...     return self.decode(self.encode(x))
        >>> sorted(AutoEncoder().init(jax.random.key(0), 1.0)['params'])
        ['decode', 'encode']
    """
    method_name = fun.__name__

    @functools.wraps(fun)
    def compact_name_scope_wrapper(self: Module, *args: Any, **kwargs: Any) -> Any:
        scope = self._require_scope(f"call {method_name}")
        name_scope = self._state.name_scopes.get(method_name)
        if name_scope is None or name_scope.scope is None:
            if scope.name_reserved(method_name):
                raise NameInUseError("name scope", method_name, type(self).__name__)
            scope.reserve(method_name, None)
            name_scope = CompactNameScope(fun, lambda: self, parent=None, name=method_name)
            object.__setattr__(name_scope, "parent", self)
            object.__setattr__(name_scope, "scope", scope.push(method_name))
            self._state.name_scopes[method_name] = name_scope
        return name_scope(*args, **kwargs)

    return compact_name_scope_wrapper  # type: ignore[return-value]
