"""Putting NNX and Linen modules inside a bridge.Module's compact method (or setup)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from plait import linen, nnx

from ._abstract import build_abstract, placeholders
from ._context import current_context
from ._errors import BridgeError
from ._module import Module, _auto_name
from ._to_nnx import ToNNX


def _running_parent(what: str) -> tuple[Any, Module]:
    entry = current_context()
    parent = None if entry is None else entry.module
    if entry is None or not isinstance(parent, Module) or parent.scope is None:
        raise BridgeError(
            f"{what}() creates a submodule of the running bridge.Module, but no bound "
            "bridge.Module method is running.\nFix: call it inside a @bridge.compact method "
            "or setup() of a bridge.Module, during init() or apply()."
        )
    return entry, parent


def nnx_in_bridge_mdl(
    factory: Callable[[nnx.Rngs], nnx.Module], name: str | None = None
) -> nnx.Module:
    """An NNX module as a submodule of the running bridge.Module.

    In ``init`` the module is built with ``factory(rngs)`` (the bridge scope's RNG
    streams); in ``apply`` it is built abstractly (no initializer runs) and receives the
    stored values. In a compact method it is attached as ``name`` (default
    ``ClassName_N``); a second run of the method returns the same module.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from plait import bridge, nnx
        >>> class Model(bridge.Module):
        ...   @bridge.compact
        ...   def __call__(self, x):
        ...     return bridge.nnx_in_bridge_mdl(lambda r: nnx.Linear(3, 2, rngs=r))(x)
        >>> variables = Model().init(0, jnp.ones((1, 3)))
        >>> jax.tree.map(jnp.shape, variables)
        {'params': {'Linear_0': {'bias': (2,), 'kernel': (3, 2)}}}
    """
    entry, parent = _running_parent("nnx_in_bridge_mdl")
    if name is not None and entry.in_compact:
        existing = vars(parent).get(name)
        if isinstance(existing, nnx.Module):
            return existing
    scope = parent.scope
    if parent.is_initializing():
        module = factory(scope.rngs)
    else:
        # Without streams (apply(..., rngs=None)) the constructor still needs an Rngs to
        # run abstractly; its keys only shape placeholders. RNG streams the module keeps
        # get keys from the scope when it has them.
        rngs = scope.rngs
        build_rngs = rngs if len(rngs) else nnx.Rngs(0)

        def draw(tag: str) -> Any:
            if tag in rngs or "default" in rngs:
                return rngs[tag]()
            return jax.random.key(0)

        module = build_abstract(factory, build_rngs, draw)
    if entry.in_compact:
        if name is None:
            name = _auto_name(entry, type(module))
            existing = vars(parent).get(name)
            if type(existing) is type(module):
                return existing
        setattr(parent, name, module)
        missing = placeholders(module)
        if missing:
            path, variable = missing[0]
            raise BridgeError(
                f"{type(parent).__name__}.{name} ({type(module).__name__}): the variables "
                f"given to apply() have no value for {'/'.join(map(str, (name, *path)))} "
                f"({type(variable).__name__}).\nFix: pass the variables returned by init() "
                "for this model."
            )
    return module


def linen_in_bridge_mdl(linen_module: linen.Module, name: str | None = None) -> nnx.Module:
    """A Linen module as a submodule (a ``ToNNX``) of the running bridge.Module.

    It initializes on its first call during ``init`` and reads the stored values during
    ``apply``; in a compact method it is attached as ``name`` (default: the Linen
    module's class name, numbered: ``Dense_0``).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from plait import bridge, linen as nn
        >>> class Model(bridge.Module):
        ...   @bridge.compact
        ...   def __call__(self, x):
        ...     return bridge.linen_in_bridge_mdl(nn.Dense(2))(x)
        >>> variables = Model().init(0, jnp.ones((1, 3)))
        >>> jax.tree.map(jnp.shape, variables)
        {'params': {'Dense_0': {'bias': (2,), 'kernel': (3, 2)}}}
        >>> Model().apply(variables, jnp.ones((4, 3))).shape
        (4, 2)
    """
    entry, parent = _running_parent("linen_in_bridge_mdl")
    if entry.in_compact and name is None:
        name = _auto_name(entry, type(linen_module))
    if entry.in_compact:
        existing = vars(parent).get(name)
        if isinstance(existing, ToNNX):
            return existing
    module = ToNNX(linen_module, rngs=parent.scope.rngs)
    if entry.in_compact:
        setattr(parent, name, module)
        if not parent.is_initializing() and not module.to_nnx__initialized:
            # apply() had no variables for it: a Linen module without variables (e.g.
            # Dropout). If it does need some, Linen's apply names the missing ones.
            module._adopt({})
    return module
