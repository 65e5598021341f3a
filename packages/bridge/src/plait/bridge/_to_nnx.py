"""``ToNNX``: a Linen module used as an NNX module.

The wrapper owns the Linen module's variables as ordinary NNX Variables, held as its own
attributes (``model.kernel``, ``model.Dense_0['bias']``), so ``nnx.split`` / ``nnx.state``
/ ``nnx.Optimizer`` / ``nnx.jit`` see them like any NNX state. A call rebuilds the Linen
variables dict from those Variables (no copies of the arrays), runs ``apply``, and writes
the collections the call made mutable back into the *same* Variable objects, so references
held elsewhere (an optimizer, a jit cache) stay valid.

Initialization is lazy, as in Linen: the first call (or ``lazy_init``) runs the Linen
module's ``init_with_output`` on the given inputs. ``lazy_init`` re-initializes every
``ToNNX`` it reaches, as Flax does.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections.abc import Callable, Mapping
from typing import Any

import jax
from plait import linen, nnx
from plait.core import Variable
from plait.linen import errors as linen_errors

from ._context import current_bridge_module, current_linen_module
from ._errors import (
    APPLY_IMMUTABLE,
    INIT_MISSING_INPUT,
    INIT_MISSING_RNG,
    NOT_A_MODULE_METHOD,
    NOT_INITIALIZED,
    RESERVED_ATTRIBUTE,
    InitializationError,
    MutabilityError,
    NotInitializedError,
    VariableLayoutError,
)
from ._variables import _flatten, linen_vars_to_nnx_attrs, nnx_attrs_to_linen_vars

_lazy_init_state = threading.local()


def _forcing_init() -> bool:
    return getattr(_lazy_init_state, "depth", 0) > 0


def _nnx_path(module: Any) -> str:
    # plait.nnx knows which Modules are being called (to name paths in its own errors) but
    # does not export it; without it we fall back to the type name.
    try:
        from plait.nnx._callpath import module_path
    except ImportError:  # pragma: no cover - depends on plait.nnx internals
        return type(module).__name__
    return module_path(module)


def _describe(module: Any) -> str:
    """``Dense(features=3)``: the class and the fields that differ from their defaults
    (Linen's full repr lists every initializer function)."""
    parts = []
    for field in dataclasses.fields(module):
        if field.name in ("parent", "name") or not field.repr:
            continue
        value = getattr(module, field.name, None)
        if field.default is not dataclasses.MISSING and _equal(value, field.default):
            continue
        if isinstance(value, (bool, int, float, str, tuple, type(None))):
            parts.append(f"{field.name}={value!r}")
        else:
            parts.append(f"{field.name}=...")
    if getattr(module, "name", None):
        parts.append(f"name={module.name!r}")
    return f"{type(module).__name__}({', '.join(parts)})"


def _equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - arrays and other values without a plain ==
        return a is b


def _first_line(error: Exception) -> str:
    # The wrapped error's own "Fix:" speaks of Linen's apply(); ours replaces it.
    lines = str(error).splitlines()
    return lines[0] if lines else type(error).__name__


def _is_missing_argument(error: TypeError) -> bool:
    text = str(error)
    return "missing" in text and "argument" in text


# Names Linen's Module defines itself (init, apply, bind, ...): never forwarded as methods.
_LINEN_BASE_NAMES = frozenset(dir(linen.Module))


class ToNNX(nnx.Module):
    """A Linen module used as an NNX module.

    The Linen variables become NNX Variables of the matching types (``params`` ->
    ``nnx.Param``, ``batch_stats`` -> ``nnx.BatchStat``, any other collection -> the
    Variable type registered for its name), held as attributes of the wrapper. The first
    call (or :meth:`lazy_init`) initializes them from a sample input.

    Args:
        module: the Linen module (unbound).
        rngs: RNG streams for initialization and for stochastic layers (``dropout``...):
            an ``nnx.Rngs`` (each call draws one key per stream; a ``default`` stream is
            passed to Linen as ``params``), a PRNG key or an int seed (the ``params``
            stream), or None.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from plait import bridge, nnx, linen as nn
        >>> model = bridge.ToNNX(nn.Dense(4), rngs=nnx.Rngs(0)).lazy_init(jnp.ones((1, 3)))
        >>> model.kernel.shape, type(model.kernel).__name__
        ((3, 4), 'Param')
        >>> model(jnp.ones((2, 3))).shape
        (2, 4)
    """

    def __init__(self, module: linen.Module, rngs: nnx.Rngs | jax.Array | int | None = None):
        self.to_nnx__module = module
        self.to_nnx__rngs = rngs
        self.to_nnx__initialized = False
        self.linen_attributes: tuple[str, ...] = ()

    @property
    def rngs(self) -> nnx.Rngs | jax.Array | int | None:
        """The RNG streams given at construction."""
        return self.to_nnx__rngs

    @property
    def module(self) -> linen.Module:
        """The wrapped Linen module."""
        return self.to_nnx__module

    def lazy_init(self, *args: Any, **kwargs: Any) -> ToNNX:
        """Initializes the Linen variables from sample inputs; returns ``self``.

        A shortcut for ``bridge.lazy_init(self, *args, **kwargs)``.
        """
        return lazy_init(self, *args, **kwargs)

    # -- calls ---------------------------------------------------------------------------

    def __call__(
        self,
        *args: Any,
        rngs: nnx.Rngs | jax.Array | int | None = None,
        method: Callable[..., Any] | str | None = None,
        mutable: Any = None,
        **kwargs: Any,
    ) -> Any:
        """Runs the Linen module (``method``, default ``__call__``) on the inputs.

        Args:
            rngs: RNG streams for this call; defaults to the ones given at construction.
            method: the Linen method to run (a name or the function).
            mutable: the Linen collections the call may update (``True``, a name, a list
                of names, a filter). Updates are written into the wrapper's Variables.
                ``None`` takes the setting of an enclosing ``bridge.Module`` / Linen
                module, else ``False`` (read-only), as Linen's ``apply``.
        """
        linen_rngs = self._linen_rngs(rngs)
        if _forcing_init() or not self.to_nnx__initialized:
            return self._initialize(args, kwargs, linen_rngs, method)
        variables = nnx_attrs_to_linen_vars(
            {name: getattr(self, name) for name in self.linen_attributes}
        )
        if mutable is None:
            mutable = self._inherited_mutable()
        try:
            out = self.to_nnx__module.apply(
                variables, *args, rngs=linen_rngs, method=method, mutable=mutable, **kwargs
            )
        except linen_errors.ModifyScopeVariableError as error:
            raise MutabilityError(
                APPLY_IMMUTABLE.format(
                    where=_nnx_path(self),
                    module=_describe(self.to_nnx__module),
                    col=error.col,
                    error=_first_line(error),
                )
            ) from error
        if mutable is not False:
            out, updates = out
            self._write_back(updates)
        return out

    def _linen_rngs(self, rngs: Any) -> dict[str, Any]:
        if rngs is None:
            rngs = self.to_nnx__rngs
        if rngs is None:
            return {}
        if isinstance(rngs, nnx.Rngs):
            keys = {name: stream() for name, stream in rngs.items()}
        elif isinstance(rngs, Mapping):
            keys = dict(rngs)
        else:
            keys = {"params": rngs}
        # An nnx.Rngs(0) has only a `default` stream; Linen calls the same thing `params`
        # (and falls back to it for every stream it lacks).
        if "params" not in keys and "default" in keys:
            keys["params"] = keys.pop("default")
        return keys

    def _inherited_mutable(self) -> Any:
        bridge_module = current_bridge_module()
        if bridge_module is not None and bridge_module.scope is not None:
            return bridge_module.scope.mutable
        linen_module = current_linen_module()
        if linen_module is not None and linen_module.scope is not None:
            return linen_module.scope.mutable
        return False

    # -- initialization ------------------------------------------------------------------

    def _initialize(
        self, args: tuple, kwargs: dict, linen_rngs: dict[str, Any], method: Any
    ) -> Any:
        module = self.to_nnx__module
        try:
            out, variables = module.init_with_output(linen_rngs, *args, method=method, **kwargs)
        except linen_errors.InvalidRngError as error:
            raise InitializationError(
                INIT_MISSING_RNG.format(
                    where=_nnx_path(self), module=_describe(module), error=_first_line(error)
                )
            ) from error
        except TypeError as error:
            if not _is_missing_argument(error):
                raise
            raise InitializationError(
                INIT_MISSING_INPUT.format(
                    where=_nnx_path(self), module=_describe(module), error=_first_line(error)
                )
            ) from error
        self._adopt(linen_vars_to_nnx_attrs(variables))
        return out

    def _adopt(self, attrs: dict[str, Any]) -> None:
        """Makes ``attrs`` (nested dicts of Variables) the wrapper's Linen state."""
        for name in attrs:
            if name in _own_attribute_names():
                raise VariableLayoutError(
                    RESERVED_ATTRIBUTE.format(
                        where=_nnx_path(self), module=_describe(self.to_nnx__module), name=name
                    )
                )
        for stale in set(self.linen_attributes) - set(attrs):
            delattr(self, stale)
        for name, value in attrs.items():
            setattr(self, name, value)
        self.linen_attributes = tuple(attrs)
        self.to_nnx__initialized = True

    # -- write-back ----------------------------------------------------------------------

    def _write_back(self, updates: Mapping[str, Any]) -> None:
        """Writes updated collections into the existing Variables (adding new paths)."""
        new_attrs = linen_vars_to_nnx_attrs(updates)
        added = []
        for path, new in _flatten(new_attrs).items():
            parent: Any = self
            for depth, key in enumerate(path[:-1]):
                child = _get_child(parent, key)
                if child is None:
                    child = {}
                    _set_child(parent, key, child)
                    if depth == 0:
                        added.append(key)
                    child = _get_child(parent, key)
                elif not isinstance(child, Mapping):
                    raise VariableLayoutError(
                        f"{_nnx_path(self)}: the Linen module returned a variable at "
                        f"{'/'.join(map(str, path))}, but {'/'.join(map(str, path[: depth + 1]))} "
                        f"is a {type(child).__name__}, not a group of variables.\nFix: keep "
                        "the variable layout the same as at initialization."
                    )
                parent = child
            existing = _get_child(parent, path[-1])
            if isinstance(existing, Variable) and type(existing) is type(new):
                if existing.get_metadata() == new.get_metadata():
                    existing.set_value(new.get_value())
                else:
                    existing.copy_from(new)
            else:
                _set_child(parent, path[-1], new)
                if len(path) == 1 and existing is None:
                    added.append(path[0])
        if added:
            self.linen_attributes = (*self.linen_attributes, *added)

    # -- Linen methods and helpful errors ------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        attrs = object.__getattribute__(self, "__dict__")
        module = attrs.get("to_nnx__module")
        if module is not None and name not in _LINEN_BASE_NAMES:
            field_names = {f.name for f in dataclasses.fields(module)}
            candidate = getattr(type(module), name, None)
            if name not in field_names and callable(candidate) and not isinstance(candidate, type):
                method = functools.partial(self.__call__, method=candidate)
                method.__self__ = self  # type: ignore[attr-defined]  # lets lazy_init(model.m, x) find the module
                return method
        if module is not None and not attrs.get("to_nnx__initialized", False):
            raise NotInitializedError(
                NOT_INITIALIZED.format(
                    where=f"{_nnx_path(self)} wrapping {_describe(module)}", name=name
                )
            )
        raise AttributeError(f"'{type(self).__name__}' object has no attribute {name!r}")


@functools.cache
def _own_attribute_names() -> frozenset[str]:
    return frozenset(dir(ToNNX)) | {
        "to_nnx__module",
        "to_nnx__rngs",
        "to_nnx__initialized",
        "linen_attributes",
    }


def _get_child(parent: Any, key: Any) -> Any:
    if isinstance(parent, Mapping):
        return parent.get(key)
    return vars(parent).get(key)


def _set_child(parent: Any, key: Any, value: Any) -> None:
    if isinstance(parent, Mapping):
        parent[key] = value  # type: ignore[index]
    else:
        setattr(parent, key, value)


def lazy_init(fn: nnx.Module | Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Runs ``fn(*args, **kwargs)`` once so that every ``ToNNX`` it reaches initializes.

    ``fn`` is an NNX Module or a bound method of one. Every ``ToNNX`` called during the run
    (re-)initializes its Linen variables from the inputs it receives, as in Flax. Returns
    ``fn``, so ``model = bridge.lazy_init(model, x)`` works.

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait import bridge, nnx, linen as nn
        >>> model = bridge.lazy_init(bridge.ToNNX(nn.Dense(2), rngs=nnx.Rngs(0)), jnp.ones((1, 5)))
        >>> model.kernel.shape
        (5, 2)
    """
    if not isinstance(fn, nnx.Module):
        owner = getattr(fn, "__self__", None)
        if not isinstance(owner, nnx.Module):
            raise InitializationError(NOT_A_MODULE_METHOD.format(fn=fn))
    _lazy_init_state.depth = getattr(_lazy_init_state, "depth", 0) + 1
    try:
        fn(*args, **kwargs)
    finally:
        _lazy_init_state.depth -= 1
    return fn
