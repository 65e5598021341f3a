"""``bridge.Module``: NNX modules written Linen-style (dataclass fields, ``@compact``,
``self.param``, ``init`` / ``apply`` with variables dicts).

A bridge.Module is an ordinary NNX module (its Variables are attributes, ``nnx.state``
sees them) whose *structure* is built lazily, the Linen way:

* Subclasses are dataclasses of hyper-parameters. Construction creates no Variables.
* Inside a ``@bridge.compact`` method, constructing a bridge.Module makes it a child of
  the running module, named ``ClassName_N`` (or ``name=``); ``self.param(name, init,
  ...)`` creates a ``Param`` attribute on first use and finds it afterwards. Running the
  compact method again reuses the children it created (same class, same fields).
* ``init(rngs, *args)`` / ``apply(variables, *args, rngs=, mutable=)`` run a clone of the
  module bound to a :class:`Scope` (RNG streams and the mutable collections), and return
  Linen-shaped variables ``{collection: {...}}``.

Variables given to ``apply`` for children that do not exist yet (they are created by the
compact method) are kept *pending* for the duration of the call and poured into the child
when it is attached to its parent.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import threading
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import jax
import numpy as np
from plait import nnx
from plait.core import FrozenDict, Param, RngState, Variable, variable_name_from_type
from plait.linen import meta
from plait.linen.errors import ScopeParamShapeError

from ._context import MODULE_CONTEXT, ModuleStackEntry, current_context
from ._errors import UNBOUND_BRIDGE_MODULE, VARIABLE_TYPE_MISMATCH, BridgeError
from ._variables import _unflatten, linen_vars_to_nnx_attrs, to_linen_var, to_nnx_var

A = TypeVar("A")

CollectionFilter = Any  # bool | str | Sequence[str] | nn.DenyList, as Linen's


class UnboundModuleError(BridgeError, ValueError):
    """A bridge.Module used variables or RNGs without being bound to a scope."""


class AttrPriority(enum.IntEnum):
    """Order in which a bridge.Module's attributes are bound and set up (lowest first)."""

    HIGH = 0
    INIT_PARENT = 20
    DEFAULT = 50
    LOW = 100


class ModuleState(nnx.State):
    """Variables given to ``apply`` for a child that does not exist yet.

    Kept (for the duration of the call) until the compact method or ``setup`` creates
    the child, then poured into it.
    """


nnx.register_data_type(ModuleState)


class Scope(nnx.Pytree):
    """What a bound bridge.Module draws on: RNG streams and the mutable collections.

    ``initializing`` says whether the module runs inside ``init``.
    """

    def __init__(self, rngs: nnx.Rngs, mutable: CollectionFilter):
        self.rngs = rngs
        self.mutable = tuple(mutable) if isinstance(mutable, list) else mutable
        self.initializing = False

    def copy(self) -> Scope:
        """A new Scope sharing the same RNG streams and settings."""
        scope = Scope(self.rngs, self.mutable)
        scope.initializing = self.initializing
        return scope


class _HasSetup(typing.Protocol):
    def setup(self) -> None: ...


def has_setup(x: Any) -> typing.TypeGuard[_HasSetup]:
    """Whether ``x`` defines ``setup()``."""
    return hasattr(x, "setup")


# -- pending states ---------------------------------------------------------------------

_pending_local = threading.local()


def _pending_frames() -> list[dict[int, tuple[Any, dict[Any, Any]]]]:
    frames = getattr(_pending_local, "frames", None)
    if frames is None:
        frames = _pending_local.frames = []
    return frames


def _add_pending(owner: Any, key: Any, tree: Any) -> None:
    frames = _pending_frames()
    if frames:
        frames[-1].setdefault(id(owner), (owner, {}))[1][key] = tree


def _take_pending(owner: Any, key: Any) -> Any:
    frames = _pending_frames()
    if not frames:
        return None
    entry = frames[-1].get(id(owner))
    if entry is None:
        return None
    return entry[1].pop(key, None)


def _child(parent: Any, key: Any) -> Any:
    if isinstance(parent, Mapping):
        return parent.get(key)
    if isinstance(parent, (list, tuple)):
        return parent[key] if isinstance(key, int) and 0 <= key < len(parent) else None
    return vars(parent).get(key)


def pour(target: Any, tree: Mapping[Any, Any]) -> None:
    """Writes a nested dict of Variables into ``target``'s own Variables.

    Children of a bridge.Module that do not exist yet are kept pending; an uninitialized
    ``ToNNX`` adopts the Variables as its Linen state.
    """
    from ._to_nnx import ToNNX

    if isinstance(target, ToNNX) and not target.to_nnx__initialized:
        target._adopt(_plain(tree))
        return
    for key, sub in tree.items():
        child = _child(target, key)
        if isinstance(child, Variable):
            if isinstance(sub, Variable):
                child.set_raw_value(sub.get_raw_value())
            continue
        if child is not None and isinstance(sub, Mapping):
            pour(child, sub)
        elif child is None and isinstance(target, Module):
            if isinstance(sub, Variable):
                nnx.Module.__setattr__(target, key, sub)
            else:
                _add_pending(target, key, ModuleState(_plain(sub)))


def _plain(tree: Mapping[Any, Any]) -> dict[Any, Any]:
    return {k: _plain(v) if isinstance(v, Mapping) else v for k, v in tree.items()}


# -- module metaclass: compact naming ---------------------------------------------------


def _auto_name(entry: ModuleStackEntry, cls: type) -> str:
    index = entry.type_counter[cls]
    entry.type_counter[cls] += 1
    return f"{cls.__name__}_{index}"


def _same_fields(a: Any, b: Any) -> bool:
    for field in dataclasses.fields(a):
        try:
            if bool(getattr(a, field.name) != getattr(b, field.name)):
                return False
        except Exception:  # noqa: BLE001 - arrays and other values without a plain ==
            if getattr(a, field.name) is not getattr(b, field.name):
                return False
    return True


class ModuleMeta(type):
    """Metaclass of bridge.Module: names and attaches modules built in compact methods."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        entry = current_context()
        parent = None
        name = None
        if entry is not None:
            if "parent" in kwargs:
                parent = kwargs.pop("parent")
                if parent is not None:
                    raise BridgeError(
                        f"{cls.__name__}(parent={type(parent).__name__}): inside a bridge "
                        "module, parent= can only be None (to create a detached module).\n"
                        "Fix: drop parent=; the running module becomes the parent."
                    )
            else:
                parent = entry.module
            if "name" in kwargs:
                name = kwargs["name"]
                if "name" not in getattr(cls, "__dataclass_fields__", {}):
                    kwargs.pop("name")
                if not isinstance(name, str):
                    raise TypeError(
                        f"{cls.__name__}(name=...) must be a str, got {type(name).__name__}."
                    )
            elif entry.in_compact:
                name = _auto_name(entry, cls)
        module = super().__call__(*args, **kwargs)
        if parent is not None and name is not None:
            existing = vars(parent).get(name)
            if type(existing) is cls and _same_fields(existing, module):
                return existing
            setattr(parent, name, module)
            parent.set_attr_priority(name, AttrPriority.INIT_PARENT)
        return module


class ModuleBase:
    """Attributes every bridge.Module has (for type checkers)."""

    if typing.TYPE_CHECKING:
        scope: Scope | None
        attr_priorities: dict[str, AttrPriority]


_INTERNAL_ATTRS = frozenset({"scope", "attr_priorities", "_bridge_setup_done"})


@typing.dataclass_transform(field_specifiers=(dataclasses.field,))
class Module(nnx.Module, ModuleBase, metaclass=ModuleMeta):
    """An NNX module with Linen-style definition and naming.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from plait import bridge, nnx
        >>> class Dense(bridge.Module):
        ...   features: int
        ...   @bridge.compact
        ...   def __call__(self, x):
        ...     w = self.param('kernel', nnx.initializers.lecun_normal(), (x.shape[-1], self.features))
        ...     return x @ w
        >>> class MLP(bridge.Module):
        ...   @bridge.compact
        ...   def __call__(self, x):
        ...     h = jax.nn.relu(Dense(4)(x))
        ...     return Dense(2)(h)
        >>> variables = MLP().init(0, jnp.ones((1, 3)))
        >>> jax.tree.map(jnp.shape, variables)
        {'params': {'Dense_0': {'kernel': (3, 4)}, 'Dense_1': {'kernel': (4, 2)}}}
        >>> MLP().apply(variables, jnp.ones((5, 3))).shape
        (5, 2)
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Identity equality and hashing, like every NNX module.
        dataclasses.dataclass(repr=False, eq=False)(cls)

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        module = super().__new__(cls)
        module.__dict__["scope"] = None
        module.__dict__["attr_priorities"] = {}
        return module

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name in _INTERNAL_ATTRS or self.__dict__.get("scope") is None:
            return
        pending = _take_pending(self, name)
        if pending is not None:
            pour(value, pending)
        _bind(self.scope, value)

    def set_attr_priority(self, name: str, value: AttrPriority) -> None:
        """Sets the order (``AttrPriority``) in which attribute ``name`` is bound/set up."""
        self.attr_priorities[name] = value

    # -- variables and RNGs ------------------------------------------------------------------

    def _require_scope(self, what: str) -> Scope:
        scope = self.__dict__.get("scope")
        if scope is None:
            raise UnboundModuleError(
                UNBOUND_BRIDGE_MODULE.format(cls=type(self).__name__, what=what)
            )
        return scope

    def make_rng(self, name: str = "default") -> jax.Array:
        """A fresh key from the bound scope's RNG stream ``name``."""
        return self._require_scope("make_rng").rngs[name]()

    def param(
        self,
        name: str,
        init_fn: Callable[..., A],
        *init_args: Any,
        unbox: bool = True,
        **init_kwargs: Any,
    ) -> Any:
        """The ``Param`` named ``name``, created with ``init_fn(key, *init_args)`` if absent.

        Returns the value when ``unbox`` (as Linen's ``param``; arrays work with every
        ``jnp`` function), else the ``Param`` Variable itself.
        """
        self._require_scope("param")
        variable = self._find_or_create(
            name,
            "params",
            Param,
            lambda: init_fn(self.make_rng("params"), *init_args, **init_kwargs),
            lambda: init_fn(jax.random.key(0), *init_args, **init_kwargs),
        )
        return variable.get_value() if unbox else variable

    def variable(
        self,
        col: str,
        name: str,
        init_fn: Callable[..., A] | None = None,
        *init_args: Any,
        unbox: bool = True,
        **init_kwargs: Any,
    ) -> Variable[A]:
        """The Variable ``name`` of collection ``col``, created with ``init_fn(*init_args)``."""
        self._require_scope("variable")
        var_type = nnx.variable_type_from_name(col, allow_register=True)

        def make() -> Any:
            if init_fn is None:
                raise BridgeError(
                    f"{type(self).__name__}.variable({col!r}, {name!r}) has no value and no "
                    "init_fn to create it.\nFix: pass an init function, e.g. "
                    f"self.variable({col!r}, {name!r}, jnp.zeros, (3,))."
                )
            return init_fn(*init_args, **init_kwargs)

        return self._find_or_create(name, col, var_type, make, make)

    def _find_or_create(
        self,
        name: str,
        col: str,
        var_type: type,
        create: Callable[[], Any],
        abstract: Callable[[], Any],
    ) -> Variable[Any]:
        existing = vars(self).get(name)
        if isinstance(existing, Variable):
            if not isinstance(existing, var_type):
                raise BridgeError(
                    VARIABLE_TYPE_MISMATCH.format(
                        cls=type(self).__name__,
                        name=name,
                        found=type(existing).__name__,
                        what="this call",
                        expected=var_type.__name__,
                        col=col,
                    )
                )
            return existing
        if existing is not None:
            # A bare value (e.g. assigned by the user): check it against the initializer.
            expected = jax.eval_shape(abstract)
            for given, shape in zip(
                jax.tree.leaves(existing), jax.tree.leaves(expected), strict=False
            ):
                if np.shape(given) != tuple(shape.shape):
                    raise ScopeParamShapeError(
                        name, type(self).__name__, np.shape(given), shape.shape
                    )
            value = existing
        else:
            value = create()
        if isinstance(value, meta.AxisMetadata):
            variable = to_nnx_var(col, value)
        else:
            variable = var_type(value)
        setattr(self, name, variable)
        return variable

    @property
    def variables(self) -> FrozenDict:
        """``{collection: nested values}`` of every Variable (RNG state excluded)."""
        return FrozenDict(linen_variables(self))

    def is_initializing(self) -> bool:
        """Whether the module runs inside ``init``."""
        scope = self.__dict__.get("scope")
        return bool(scope is not None and scope.initializing)

    # -- functional entry points ---------------------------------------------------------------

    def apply(
        self,
        variables: Mapping[str, Mapping[str, Any]],
        *args: Any,
        rngs: int | jax.Array | dict[str, jax.Array] | nnx.Rngs | None = None,
        method: Callable[..., Any] | str = "__call__",
        mutable: CollectionFilter = False,
        _initialize: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Runs ``method`` on a clone bound to ``variables``.

        Returns the output, or ``(output, variables)`` when ``mutable`` is not False
        (``variables`` holds the collections ``mutable`` names).
        """
        module = nnx.clone(self)
        scope = Scope(_as_rngs(rngs), mutable)
        scope.initializing = _initialize
        fn = _resolve_method(module, method)
        _pending_frames().append({})
        try:
            for node in _bridge_modules_in_graph(module):
                nnx.Module.__setattr__(node, "scope", scope.copy())
            if variables:
                pour(module, linen_vars_to_nnx_attrs(variables))
            for node in _bridge_modules_in_graph(module):
                _setup_once(node)
            MODULE_CONTEXT.module_stack.append(ModuleStackEntry(module, in_compact=False))
            try:
                out = fn(module, *args, **kwargs)
            finally:
                MODULE_CONTEXT.module_stack.pop()
            new_variables = linen_variables(module)
        finally:
            _pending_frames().pop()
            for node in _bridge_modules_in_graph(module):
                nnx.Module.__setattr__(node, "scope", None)
        if mutable is False:
            return out
        if not _initialize:
            new_variables = {k: v for k, v in new_variables.items() if _in_filter(mutable, k)}
        return out, new_variables

    def init(
        self,
        rngs: int | jax.Array | dict[str, jax.Array] | nnx.Rngs | None = None,
        *args: Any,
        method: Callable[..., Any] | str = "__call__",
        **kwargs: Any,
    ) -> dict[str, Mapping[str, Any]]:
        """Creates the variables by running ``method`` on ``args``; returns them."""
        return self.init_with_output(rngs, *args, method=method, **kwargs)[1]

    def init_with_output(
        self,
        rngs: int | jax.Array | dict[str, jax.Array] | nnx.Rngs | None = None,
        *args: Any,
        method: Callable[..., Any] | str = "__call__",
        mutable: Any = False,
        **kwargs: Any,
    ) -> tuple[Any, dict[str, Mapping[str, Any]]]:
        """Like :meth:`init`, returning ``(output, variables)``."""
        return self.apply(
            {}, *args, rngs=rngs, method=method, mutable=True, _initialize=True, **kwargs
        )


def compact[F: Callable[..., Any]](f: F) -> F:
    """Marks a bridge.Module method in which submodules and params are defined inline.

    Examples:
        >>> from plait import bridge
        >>> class Id(bridge.Module):
        ...   @bridge.compact
        ...   def __call__(self, x):
        ...     return x
        >>> Id().apply({}, 3)
        3
    """

    @functools.wraps(f)
    def compact_wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(self, Module):
            raise BridgeError(
                f"@bridge.compact methods belong to bridge.Module subclasses, but "
                f"{f.__qualname__} was called on a {type(self).__name__}.\nFix: subclass "
                "bridge.Module, or drop @bridge.compact."
            )
        MODULE_CONTEXT.module_stack.append(ModuleStackEntry(self, in_compact=True))
        try:
            return f(self, *args, **kwargs)
        finally:
            MODULE_CONTEXT.module_stack.pop()

    compact_wrapper.compact = True  # type: ignore[attr-defined]
    return compact_wrapper  # type: ignore[return-value]


# -- helpers ------------------------------------------------------------------------------


def _as_rngs(rngs: Any) -> nnx.Rngs:
    if rngs is None:
        return nnx.Rngs()
    if isinstance(rngs, nnx.Rngs):
        return rngs
    if isinstance(rngs, Mapping):
        return nnx.Rngs(**rngs)
    return nnx.Rngs(rngs)


def _resolve_method(module: Module, method: Callable[..., Any] | str) -> Callable[..., Any]:
    if isinstance(method, str):
        attr = getattr(module, method, None)
        if isinstance(attr, nnx.Module):
            return lambda m, *a, **k: getattr(m, method)(*a, **k)
        fn = getattr(type(module), method, None)
        if fn is None or not callable(fn):
            raise BridgeError(
                f"{type(module).__name__}.apply(method={method!r}): no such method.\n"
                "Fix: pass the name of a method of the module, or the function itself."
            )
        return fn
    return getattr(method, "__func__", method)


def _in_filter(mutable: Any, col: str) -> bool:
    if isinstance(mutable, bool):
        return mutable
    if isinstance(mutable, str):
        return mutable == col
    deny = getattr(mutable, "deny", None)
    if deny is not None:
        return not _in_filter(deny, col)
    return col in mutable


def _bridge_modules_in_graph(root: Any) -> list[Module]:
    """Bridge modules reachable from ``root``: parents before children, and the children
    of a module in the order of its ``attr_priorities`` (then by name)."""
    found: list[Module] = []
    seen: set[int] = set()

    def visit(x: Any) -> None:
        if isinstance(x, nnx.Pytree):
            if id(x) in seen:
                return
            seen.add(id(x))
            items = list(vars(x).items())
            if isinstance(x, Module):
                found.append(x)
                priorities = x.__dict__.get("attr_priorities", {})
                items.sort(key=lambda kv: (priorities.get(kv[0], AttrPriority.DEFAULT), str(kv[0])))
            for key, value in items:
                if key != "scope":
                    visit(value)
        elif isinstance(x, Mapping):
            for value in x.values():
                visit(value)
        elif isinstance(x, (list, tuple)):
            for value in x:
                visit(value)

    visit(root)
    return found


def _bind(scope: Scope, value: Any) -> None:
    """Binds every bridge module in ``value`` that has no scope yet, then sets them up."""
    modules = _bridge_modules_in_graph(value)
    for node in modules:
        if node.__dict__.get("scope") is None:
            nnx.Module.__setattr__(node, "scope", scope.copy())
    for node in modules:
        _setup_once(node)


def _setup_once(module: Module) -> None:
    if not has_setup(module) or module.__dict__.get("_bridge_setup_done"):
        return
    MODULE_CONTEXT.module_stack.append(ModuleStackEntry(module, in_compact=False))
    try:
        module.setup()
        nnx.Module.__setattr__(module, "_bridge_setup_done", True)
    finally:
        MODULE_CONTEXT.module_stack.pop()


def linen_variables(module: Any) -> dict[str, Any]:
    """Every Variable of ``module`` (RNG state excluded) as Linen ``{collection: tree}``."""
    flat: dict[str, dict[tuple, Any]] = {}
    for path, node in nnx.iter_graph(module):
        if isinstance(node, Variable) and not isinstance(node, RngState):
            col = variable_name_from_type(type(node), allow_register=True)
            flat.setdefault(col, {})[tuple(path)] = to_linen_var(node)
    return {col: _unflatten(values) for col, values in flat.items()}
