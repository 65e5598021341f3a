"""Module: Linen's dataclass module, with ``setup`` / ``@compact``, ``init`` and ``apply``.

How a module finds its variables
--------------------------------
A module is *unbound* (a plain dataclass of hyper-parameters) until it gets a
:class:`~plait.linen._scope.Scope`. ``init``/``apply``/``bind`` make a root scope and bind a
clone of the module to it. A submodule is bound when its parent is:

* created inside a ``@compact`` method: named ``ClassName_N`` (or ``name=``) at
  construction, and bound to ``parent.scope.push(name)`` right away;
* assigned to an attribute in ``setup`` (``self.dense = Dense(3)``): named after the
  attribute (``dense``, ``layers_0`` for lists, ``layers_key`` for dicts) when assigned;
* passed as a field of another module from outside any module (``Sequential([Dense(3)])``):
  *adopted* by the module holding it, and named after the field (``layers_0``).

The module whose method is running is on a thread-local stack; a submodule created without
``parent=`` takes the top of that stack as its parent. Every method a subclass defines is
wrapped so that calling it runs ``setup`` first (lazily, once per bound instance), pushes the
module on the stack, runs method interceptors and intermediate capture, and, for the
``@compact`` method, resets the auto-naming counters afterwards so that the next call finds
the same submodules (and so the same parameters) again.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import itertools
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
from plait.core import FrozenDict

from ._context import _context, run_interceptors
from ._context import compact as compact  # re-exported: layers import them from here
from ._context import merge_param as merge_param
from ._context import nowrap as nowrap
from ._errors import (
    ApplyModuleInvalidMethodError,
    AssignSubModuleError,
    CallCompactUnboundModuleError,
    CallUnbindOnUnboundModuleError,
    InitializationNotAllowedError,
    InvalidInstanceModuleError,
    LinenError,
    MultipleMethodsCompactError,
    NameInUseError,
    ReservedModuleAttributeError,
    SetAttributeFrozenModuleError,
    SetAttributeInModuleSetupError,
    UnboundModuleError,
)
from ._filters import DENY_INTERMEDIATES, CollectionFilter
from ._scope import Scope, Variable, check_variables, normalize_rngs

T = TypeVar("T")
M = TypeVar("M", bound="Module")
_CallableT = TypeVar("_CallableT", bound=Callable[..., Any])


class _Sentinel:
    def __repr__(self) -> str:
        return "_unspecified_parent"

    def __reduce__(self) -> str:  # keeps the sentinel a singleton under copy.deepcopy
        return "_unspecified_parent"


_unspecified_parent = _Sentinel()


# --- module internals -----------------------------------------------------------------


@dataclasses.dataclass
class _ModuleState:
    in_compact_method: bool = False
    in_setup: bool = False
    setup_done: bool = False
    is_initialized: bool = False
    autoname_cursor: dict[str, int] = dataclasses.field(default_factory=dict)
    children: dict[str, Any] = dataclasses.field(default_factory=dict)
    name_scopes: dict[str, Any] = dataclasses.field(default_factory=dict)

    def reset(self) -> None:
        self.in_compact_method = False
        self.in_setup = False
        self.autoname_cursor = {}


_module_ids = itertools.count()
_RESERVED_FIELDS = ("parent", "name")
_NOT_WRAPPED = frozenset({"__eq__", "__repr__", "__init__", "__hash__", "__post_init__", "setup"})


def _is_wrappable(name: str, value: Any) -> bool:
    if name in _NOT_WRAPPED:
        return False
    if name.startswith("__") and name.endswith("__") and name != "__call__":
        return False
    if isinstance(value, (staticmethod, classmethod, type)):
        return False
    return inspect.isfunction(value) and not getattr(value, "nowrap", False)


def _map_over_modules(fn: Callable[[str, Module], Any], value: Any, suffix: str = "") -> Any:
    """Applies ``fn(suffix, module)`` to every module in nested lists/tuples/dicts."""
    if isinstance(value, Module):
        return fn(suffix, value)
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        mapped = [_map_over_modules(fn, v, f"{suffix}_{i}") for i, v in enumerate(value)]
        return tuple(mapped) if isinstance(value, tuple) else mapped
    if isinstance(value, Mapping):
        mapped = {k: _map_over_modules(fn, v, f"{suffix}_{k}") for k, v in value.items()}
        return FrozenDict(mapped) if isinstance(value, FrozenDict) else mapped
    return value


def _freeze_attr(value: Any) -> Any:
    """Lists become tuples and dicts FrozenDicts, so module attributes stay immutable."""
    if isinstance(value, list):
        return tuple(_freeze_attr(v) for v in value)
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(_freeze_attr(v) for v in value)
    if isinstance(value, dict):
        return FrozenDict({k: _freeze_attr(v) for k, v in value.items()})
    return value


def _contains_module(value: Any) -> bool:
    found = False

    def visit(suffix: str, module: Module) -> Module:
        nonlocal found
        found = True
        return module

    _map_over_modules(visit, value)
    return found


def _get_unbound_fn(method: Any) -> Callable[..., Any]:
    if inspect.ismethod(method) and isinstance(method.__self__, Module):
        return method.__func__
    if not callable(method):
        raise ApplyModuleInvalidMethodError(method)
    return method


def _wrap_method(fun: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fun)
    def wrapped_module_method(self: Module, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(self, Module):
            raise InvalidInstanceModuleError()
        return self._call_wrapped_method(fun, args, kwargs)

    wrapped_module_method.method_handler_wrapped = True  # type: ignore[attr-defined]
    wrapped_module_method.inner_fun = fun  # type: ignore[attr-defined]
    return wrapped_module_method


def _wrap_property(prop: property) -> property:
    if prop.fget is None or getattr(prop.fget, "method_handler_wrapped", False):
        return prop

    fget = prop.fget

    @functools.wraps(fget)
    def getter(self: Module) -> Any:
        self._try_setup()
        _context.module_stack.append(self)
        try:
            return fget(self)
        finally:
            _context.module_stack.pop()

    getter.method_handler_wrapped = True  # type: ignore[attr-defined]
    return property(getter, prop.fset, prop.fdel, prop.__doc__)


def _compact_method_names(cls: type) -> list[str]:
    names = []
    for name in dir(cls):
        value = inspect.getattr_static(cls, name, None)
        if callable(value) and getattr(value, "compact", False):
            names.append(name)
    return names


# --- Module ---------------------------------------------------------------------------


@typing.dataclass_transform(field_specifiers=(dataclasses.field,))
class Module:
    """Base class of Linen modules: a dataclass of hyper-parameters plus methods.

    Subclasses are dataclasses automatically, with two extra keyword-only fields appended:
    ``parent`` (set automatically) and ``name``. Define submodules and variables in
    ``setup()`` or inline in the one method decorated with ``@compact``.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from plait import linen as nn
        >>> class Linear(nn.Module):
        ...   features: int
        ...   @nn.compact
        ...   def __call__(self, x):
        ...     w = self.param('kernel', jax.nn.initializers.lecun_normal(),
        ...                    (x.shape[-1], self.features))
        ...     b = self.param('bias', jax.nn.initializers.zeros, (self.features,))
        ...     return x @ w + b[None]
        >>> model = Linear(features=2)
        >>> variables = model.init(jax.random.key(0), jnp.ones((1, 3)))
        >>> jax.tree.map(jnp.shape, variables)
        {'params': {'bias': (2,), 'kernel': (3, 2)}}
        >>> model.apply(variables, jnp.ones((1, 3))).shape
        (1, 2)
    """

    if typing.TYPE_CHECKING:
        scope: Scope | None
        parent: Module | Scope | _Sentinel | None
        name: str | None

    def __init_subclass__(cls, kw_only: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _make_module_dataclass(cls, kw_only)
        for key, value in list(cls.__dict__.items()):
            if isinstance(value, property):
                setattr(cls, key, _wrap_property(value))
            elif _is_wrappable(key, value) and key not in cls.__dataclass_fields__:
                if not getattr(value, "method_handler_wrapped", False):
                    setattr(cls, key, _wrap_method(value))
        compact_names = _compact_method_names(cls)
        if len(compact_names) > 1:
            raise MultipleMethodsCompactError(cls.__name__, compact_names)

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        self = object.__new__(cls)
        object.__setattr__(self, "_state", _ModuleState())
        object.__setattr__(self, "scope", None)
        object.__setattr__(self, "_id", next(_module_ids))
        return self

    # --- construction and naming ------------------------------------------------------
    def __post_init__(self) -> None:
        state: _ModuleState = self._state
        if self.parent is _unspecified_parent:
            object.__setattr__(self, "parent", _context.module_stack[-1])
        parent = self.parent
        if parent is None:
            state.is_initialized = True
            return
        if isinstance(parent, Module):
            parent_state: _ModuleState = parent._state
            if parent_state.in_setup and self.name is None:
                return  # named when assigned to an attribute of the parent
            if not parent._initialization_allowed:
                raise AssignSubModuleError(type(self).__name__)
            if self.name is None:
                prefix = type(self).__name__
                cursor = parent_state.autoname_cursor.get(prefix, 0)
                parent_state.autoname_cursor[prefix] = cursor + 1
                object.__setattr__(self, "name", f"{prefix}_{cursor}")
            assert parent.scope is not None
            parent._reserve_name("submodule", self.name, None)
            parent_state.children[self.name] = self
            object.__setattr__(self, "scope", parent.scope.push(self.name))
        elif isinstance(parent, Scope):
            object.__setattr__(self, "scope", parent)
        else:
            raise LinenError(
                f"{type(self).__name__}(parent=...) must be a Module, a Scope or None, but "
                f"got {type(parent).__name__}.\nFix: leave parent unset; it is filled in "
                "automatically."
            )
        if self.scope is not None:
            for f in dataclasses.fields(self):
                if f.init and f.name not in _RESERVED_FIELDS:
                    value = self.__dict__.get(f.name)
                    if _contains_module(value):
                        self._register_submodules(f.name, value)
        state.is_initialized = True

    def _reserve_name(self, kind: str, name: str, col: str | None) -> None:
        assert self.scope is not None
        if not isinstance(name, str):
            raise LinenError(
                f"The name of a {kind} of {type(self).__name__} must be a str, got {name!r}."
            )
        if self.scope.name_reserved(name, col):
            raise NameInUseError(kind, name, type(self).__name__)
        transient = not self._state.in_setup
        self.scope.reserve(name, col, transient=transient)

    @property
    def _initialization_allowed(self) -> bool:
        state = self._state
        return state.in_setup or state.in_compact_method or not state.is_initialized

    def _register_submodules(self, name: str, value: Any) -> None:
        assert self.scope is not None
        root = self.scope.root
        cache: dict[int, Module] = root.__dict__.setdefault("_adoption_cache", {})
        adopted: list[Module] = []

        def adopt(suffix: str, module: Module) -> Module:
            if module.parent is None:
                # Passed in from outside any module: this module owns a private copy.
                if module._id in cache:
                    module = cache[module._id]
                else:
                    original_id = module._id
                    module = module.clone(parent=None, name=None)
                    cache[original_id] = module
            if module.name is None:
                object.__setattr__(module, "parent", self)
                object.__setattr__(module, "name", f"{name}{suffix}")
                adopted.append(module)
            return module

        value = _freeze_attr(_map_over_modules(adopt, value))
        object.__setattr__(self, name, value)
        for module in adopted:
            module._state.is_initialized = False
            module.__post_init__()

    def __setattr__(self, name: str, value: Any) -> None:
        state: _ModuleState = self._state
        if not state.in_setup:
            if state.is_initialized:
                raise SetAttributeFrozenModuleError(type(self).__name__, name, value)
            object.__setattr__(self, name, value)
            return
        if name in self.__dataclass_fields__:
            raise SetAttributeInModuleSetupError(name, type(self).__name__)
        if _contains_module(value):
            self._register_submodules(name, value)
        else:
            object.__setattr__(self, name, _freeze_attr(value))

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails: maybe setup() has not run yet.
        d = object.__getattribute__(self, "__dict__")
        state = d.get("_state")
        if state is None or (name.startswith("__") and name.endswith("__")):
            raise AttributeError(name)
        if d.get("scope") is not None and not state.setup_done and not state.in_setup:
            self._try_setup()
            if name in d:
                return d[name]
        hint = ""
        if d.get("scope") is None and "setup" in _defined_methods(type(self)):
            hint = (
                f"\nIf {name!r} is defined in setup(): setup() only runs on a bound module. "
                "Fix: access it inside apply()/init() or on module.bind(variables)."
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}.{hint}")

    def __repr__(self) -> str:
        parts = []
        for f in dataclasses.fields(self):
            if f.name == "parent" or not f.repr:
                continue
            value = self.__dict__.get(f.name)
            if f.name == "name" and value is None:
                continue
            parts.append(f"{f.name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    # --- setup and method calls -------------------------------------------------------
    def setup(self) -> None:
        """Defines submodules and variables; runs lazily once the module is bound."""

    def _try_setup(self) -> None:
        state: _ModuleState = self._state
        if state.setup_done or state.in_setup or self.scope is None:
            return
        state.in_setup = True
        _context.module_stack.append(self)
        try:
            self.setup()
            state.setup_done = True
        finally:
            _context.module_stack.pop()
            state.in_setup = False

    def _call_wrapped_method(self, fun: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        is_compact = getattr(fun, "compact", False)
        if is_compact and self.scope is None:
            raise CallCompactUnboundModuleError(type(self).__name__, fun.__name__)
        # A lifted method runs setup and intermediate capture on its inner copy instead.
        is_lifted = getattr(fun, "_plait_lifted", False)
        if not is_lifted:
            self._try_setup()
        state: _ModuleState = self._state
        is_recurrent = state.in_compact_method
        if is_compact:
            state.in_compact_method = True
        _context.module_stack.append(self)
        try:
            if _context.named_call:
                with jax.named_scope(f"{type(self).__name__}.{fun.__name__}"):
                    y = self._run_method(fun, args, kwargs)
            else:
                y = self._run_method(fun, args, kwargs)
            if _context.capture_stack and self.scope is not None and not is_lifted:
                capture = _context.capture_stack[-1]
                if capture is not None and capture(self, fun.__name__):
                    self.sow("intermediates", fun.__name__, y)
            return y
        finally:
            _context.module_stack.pop()
            if is_compact and not is_recurrent:
                assert self.scope is not None
                self.scope.rewind()
                state.reset()

    def _run_method(self, fun: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        if _context.interceptor_stack:
            return run_interceptors(fun, self, *args, **kwargs)
        return fun(self, *args, **kwargs)

    # --- copies -------------------------------------------------------------------------
    def clone(
        self: M,
        *,
        parent: Scope | Module | _Sentinel | None = None,
        _deep_clone: bool | dict = False,
        _reset_names: bool = False,
        **updates: Any,
    ) -> M:
        """A new instance with the same fields, except ``parent`` and ``updates``.

        Examples:
            >>> from plait import linen as nn
            >>> class Linear(nn.Module):
            ...   features: int
            >>> Linear(3).clone(features=4).features
            4
        """
        attrs = {
            f.name: self.__dict__[f.name]
            for f in dataclasses.fields(self)
            if f.init and f.name in self.__dict__
        }
        attrs["parent"] = parent
        if _reset_names and "name" not in updates:
            attrs["name"] = None
        attrs.update(updates)
        if _deep_clone is not False:
            cache: dict = _deep_clone if isinstance(_deep_clone, dict) else {}

            def clone_child(suffix: str, module: Module) -> Module:
                if module._id not in cache:
                    cache[module._id] = module.clone(
                        parent=None, _deep_clone=cache, _reset_names=_reset_names
                    )
                return cache[module._id]

            for key, value in list(attrs.items()):
                if key not in _RESERVED_FIELDS and _contains_module(value):
                    attrs[key] = _map_over_modules(clone_child, value)
        return type(self)(**attrs)

    def copy(
        self: M,
        *,
        parent: Scope | Module | _Sentinel | None = _unspecified_parent,
        name: str | None = None,
        **updates: Any,
    ) -> M:
        """A deep copy (submodules too) that is a new child of the current module."""
        return self.clone(parent=parent, name=name, _deep_clone=True, **updates)

    # --- variables ------------------------------------------------------------------------
    def _require_scope(self, what: str) -> Scope:
        if self.scope is None:
            raise UnboundModuleError(what, type(self).__name__)
        return self.scope

    @property
    def variables(self) -> dict[str, Any]:
        """This module's variables, ``{collection: {...}}`` (bound modules only)."""
        return self._require_scope("access variables").variables()

    @property
    def path(self) -> tuple[str, ...]:
        """The module's path from the root, e.g. ``('Encoder_0', 'Dense_1')``."""
        return self._require_scope("access the module path").path

    def param(
        self,
        name: str,
        init_fn: Callable[..., T],
        *init_args: Any,
        unbox: bool = True,
        **init_kwargs: Any,
    ) -> T:
        """Declares (in init) or reads (in apply) the parameter ``name``.

        ``init_fn(key, *init_args, **init_kwargs)`` creates it, with ``key`` drawn from the
        ``'params'`` RNG stream. In apply, the stored value is returned after checking that
        its shape matches what ``init_fn`` would create.
        """
        scope = self._require_scope(f"create param {name!r}")
        if not self._initialization_allowed:
            raise InitializationNotAllowedError("Parameter", name, type(self).__name__)
        self._reserve_name("param", name, "params")
        value = scope.param(name, init_fn, *init_args, unbox=unbox, **init_kwargs)
        self._state.children[name] = "params"
        return value

    def variable(
        self,
        col: str,
        name: str,
        init_fn: Callable[..., T] | None = None,
        *init_args: Any,
        unbox: bool = True,
        **init_kwargs: Any,
    ) -> Variable[T]:
        """Declares (or finds) variable ``name`` in collection ``col``; returns its handle.

        ``init_fn(*init_args, **init_kwargs)`` creates it when absent and ``col`` is mutable.
        """
        scope = self._require_scope(f"create variable {name!r}")
        if not self._initialization_allowed:
            raise InitializationNotAllowedError("Variable", name, type(self).__name__)
        self._reserve_name("variable", name, col)
        v = scope.variable(col, name, init_fn, *init_args, unbox=unbox, **init_kwargs)
        self._state.children[name] = col
        return v

    def has_variable(self, col: str, name: str) -> bool:
        """Whether variable ``name`` of collection ``col`` exists."""
        return self._require_scope("query variables").has_variable(col, name)

    def get_variable(self, col: str, name: str, default: T | None = None) -> T:
        """The value of variable ``name`` in ``col`` (``default`` if absent)."""
        return self._require_scope("read variables").get_variable(col, name, default)

    def put_variable(self, col: str, name: str, value: Any) -> None:
        """Sets variable ``name`` of ``col`` (the collection must be mutable)."""
        self._require_scope("write variables").put_variable(col, name, value)

    def is_mutable_collection(self, col: str) -> bool:
        """Whether ``col`` is mutable in the current call."""
        return self._require_scope("check mutability").is_mutable_collection(col)

    def has_rng(self, name: str) -> bool:
        """Whether the RNG stream ``name`` was given to init/apply."""
        return self._require_scope("check rngs").has_rng(name)

    def make_rng(self, name: str = "params") -> jax.Array:
        """A new PRNG key from stream ``name``, different at every call and every path.

        Falls back to the ``'params'`` stream when ``name`` was not given.
        """
        return self._require_scope("draw RNG keys").make_rng(name)

    def is_initializing(self) -> bool:
        """Whether this call runs inside ``init``."""
        return bool(self._require_scope("check init").get_flag("initializing", False))

    def sow(
        self,
        col: str,
        name: str,
        value: Any,
        reduce_fn: Callable[[Any, Any], Any] = lambda xs, x: xs + (x,),
        init_fn: Callable[[], Any] = lambda: (),
    ) -> bool:
        """Stores ``value`` in ``col``/``name`` if ``col`` is mutable; returns whether it did.

        Values accumulate with ``reduce_fn`` starting from ``init_fn()`` (a tuple by
        default).

        Examples:
            >>> import jax, jax.numpy as jnp
            >>> from plait import linen as nn
            >>> class Model(nn.Module):
            ...   def __call__(self, x):
            ...     self.sow('intermediates', 'h', x * 2)
            ...     return x
            >>> _, state = Model().apply({}, jnp.ones(()), mutable=['intermediates'])
            >>> float(state['intermediates']['h'][0])
            2.0
        """
        scope = self._require_scope("sow values")
        if not scope.is_mutable_collection(col):
            return False
        if scope.has_variable(col, name):
            xs = scope.get_variable(col, name)
        else:
            scope.reserve(name, col, transient=True)
            self._state.children[name] = col
            xs = init_fn()
        scope.put_variable(col, name, reduce_fn(xs, value))
        return True

    def perturb(self, name: str, value: T, collection: str = "perturbations") -> T:
        """Adds a zero-valued variable to ``value`` so gradients w.r.t. it can be taken.

        The variable is created when ``collection`` is mutable (e.g. during init). When
        ``collection`` is passed to apply, its value is added to ``value``; otherwise
        ``value`` is returned unchanged.
        """
        scope = self._require_scope("perturb values")
        if scope.is_mutable_collection(collection) and not scope.has_variable(collection, name):
            scope.reserve(name, collection, transient=True)
            self._state.children[name] = collection
            scope.put_variable(collection, name, jax.tree_util.tree_map(jnp.zeros_like, value))
        if collection in scope.root._vars:
            if not scope.has_variable(collection, name):
                raise LinenError(
                    f'Collection "{collection}" was passed, but it has no perturbation '
                    f'"{name}" for module "{scope.path_text}".\nFix: pass the perturbations '
                    "returned by init() for this model."
                )
            value = jax.tree_util.tree_map(jnp.add, value, scope.get_variable(collection, name))
        return value

    # --- binding --------------------------------------------------------------------------
    def bind(
        self: M,
        variables: Mapping[str, Any],
        *args: Any,
        rngs: Any = None,
        mutable: CollectionFilter = False,
    ) -> M:
        """A copy of the module bound to ``variables``, usable interactively.

        Examples:
            >>> import jax, jax.numpy as jnp
            >>> from plait import linen as nn
            >>> class Scale(nn.Module):
            ...   @nn.compact
            ...   def __call__(self, x):
            ...     return x * self.param('s', jax.nn.initializers.ones, ())
            >>> variables = Scale().init(jax.random.key(0), 1.0)
            >>> bound = Scale().bind(variables)
            >>> float(bound(3.0))
            3.0
        """
        if not isinstance(self, Module):
            raise InvalidInstanceModuleError()
        if args:
            raise TypeError(
                "bind() takes the variables and keyword arguments only (rngs=, mutable=), "
                f"but got {len(args)} extra positional argument(s).\n"
                "Fix: call bind(variables, rngs=..., mutable=...)."
            )
        from ._apply import _make_root

        check_variables(variables)
        root = _make_root(variables, normalize_rngs(rngs, where="bind"), mutable, {})
        return self.clone(parent=root, _deep_clone=True)

    def unbind(self: M) -> tuple[M, dict[str, Any]]:
        """``(unbound copy, variables)`` of a bound module."""
        if self.scope is None:
            raise CallUnbindOnUnboundModuleError()
        return self.clone(_deep_clone=True, _reset_names=True, name=None), self.variables

    # --- functional entry points ----------------------------------------------------------
    def apply(
        self,
        variables: Mapping[str, Any],
        *args: Any,
        rngs: Any = None,
        method: Callable[..., Any] | str | None = None,
        mutable: CollectionFilter = False,
        capture_intermediates: bool | Callable[[Module, str], bool] = False,
        **kwargs: Any,
    ) -> Any:
        """Runs ``method`` (default ``__call__``) with ``variables``.

        Returns the output, or ``(output, mutated_variables)`` when ``mutable`` is not
        False (``mutated_variables`` holds every mutable collection).
        """
        if not isinstance(self, Module):
            raise InvalidInstanceModuleError()
        from ._apply import apply

        fn = self._resolve_method(method)
        return apply(fn, self, mutable=mutable, capture_intermediates=capture_intermediates)(
            variables, *args, rngs=rngs, **kwargs
        )

    def init_with_output(
        self,
        rngs: Any,
        *args: Any,
        method: Callable[..., Any] | str | None = None,
        mutable: CollectionFilter = DENY_INTERMEDIATES,
        capture_intermediates: bool | Callable[[Module, str], bool] = False,
        **kwargs: Any,
    ) -> tuple[Any, dict[str, Any]]:
        """Like :meth:`init` but returns ``(output, variables)``."""
        if not isinstance(self, Module):
            raise InvalidInstanceModuleError()
        from ._apply import init_with_output

        fn = self._resolve_method(method)
        return init_with_output(
            fn, self, mutable=mutable, capture_intermediates=capture_intermediates
        )(rngs, *args, **kwargs)

    def init(
        self,
        rngs: Any,
        *args: Any,
        method: Callable[..., Any] | str | None = None,
        mutable: CollectionFilter = DENY_INTERMEDIATES,
        capture_intermediates: bool | Callable[[Module, str], bool] = False,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Creates the variables by running ``method`` (default ``__call__``) on ``args``.

        ``rngs`` is a PRNG key (used as the ``'params'`` stream) or a dict of streams.
        Returns ``{collection: {...}}`` as plain nested dicts.
        """
        return self.init_with_output(
            rngs,
            *args,
            method=method,
            mutable=mutable,
            capture_intermediates=capture_intermediates,
            **kwargs,
        )[1]

    def lazy_init(
        self,
        rngs: Any,
        *args: Any,
        method: Callable[..., Any] | None = None,
        mutable: CollectionFilter = DENY_INTERMEDIATES,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Initializes from input *shapes*: pass ``jax.ShapeDtypeStruct`` for inputs.

        The initialization runs under ``jax.jit`` with dummy inputs; since only the
        variables are returned, XLA drops the forward computation they do not need.
        """

        def is_struct(x: Any) -> bool:
            return isinstance(x, jax.ShapeDtypeStruct)

        def materialize(tree: Any) -> Any:
            return jax.tree_util.tree_map(
                lambda x: jnp.zeros(x.shape, x.dtype) if is_struct(x) else x,
                tree,
                is_leaf=is_struct,
            )

        def run(rngs: Any) -> dict[str, Any]:
            return self.init(
                rngs,
                *materialize(args),
                method=method,
                mutable=mutable,
                **materialize(kwargs),
            )

        return jax.jit(run)(rngs)

    def _resolve_method(self, method: Any) -> Callable[..., Any]:
        if method is None:
            method = "__call__"
        if isinstance(method, str):
            fn = getattr(type(self), method, None)
            if fn is None or not callable(fn):
                raise ApplyModuleInvalidMethodError(f"{type(self).__name__}.{method}")
            return fn
        return _get_unbound_fn(method)

    def tabulate(
        self,
        rngs: Any,
        *args: Any,
        depth: int | None = None,
        show_repeated: bool = False,
        mutable: CollectionFilter = DENY_INTERMEDIATES,
        console_kwargs: Mapping[str, Any] | None = None,
        table_kwargs: Mapping[str, Any] = FrozenDict(),
        column_kwargs: Mapping[str, Any] = FrozenDict(),
        compute_flops: bool = False,
        compute_vjp_flops: bool = False,
        **kwargs: Any,
    ) -> str:
        """A text table of every module call: path, class, inputs, outputs and variables.

        See :func:`plait.linen.tabulate`.
        """
        from ._summary import tabulate

        return tabulate(
            self,
            rngs,
            depth=depth,
            show_repeated=show_repeated,
            mutable=mutable,
            console_kwargs=console_kwargs,
            table_kwargs=table_kwargs,
            column_kwargs=column_kwargs,
            compute_flops=compute_flops,
            compute_vjp_flops=compute_vjp_flops,
        )(*args, **kwargs)

    def module_paths(
        self,
        rngs: Any,
        *args: Any,
        show_repeated: bool = False,
        mutable: CollectionFilter = DENY_INTERMEDIATES,
        **kwargs: Any,
    ) -> dict[str, Module]:
        """``{path: module}`` for every module called when initializing with ``args``."""
        from ._summary import module_paths

        return module_paths(
            self, rngs, *args, show_repeated=show_repeated, mutable=mutable, **kwargs
        )


def _defined_methods(cls: type) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass is Module:
            break
        names.update(klass.__dict__)
    return names


def _make_module_dataclass(cls: type, kw_only: bool) -> None:
    """Makes ``cls`` a dataclass whose last fields are the keyword-only ``parent``, ``name``.

    The two fields are taken out of the base classes' field tables while the dataclass is
    built, so that they are appended after the subclass's own fields (as in Flax).
    """
    own = cls.__dict__.get("__annotations__", {})
    clash = [k for k in own if k in _RESERVED_FIELDS]
    if clash:
        raise ReservedModuleAttributeError(clash)
    saved: list[tuple[type, dict]] = []
    for base in cls.__mro__[1:]:
        fields = base.__dict__.get("__dataclass_fields__")
        if fields is not None and any(k in fields for k in _RESERVED_FIELDS):
            saved.append((base, fields))
            type.__setattr__(
                base,
                "__dataclass_fields__",
                {k: v for k, v in fields.items() if k not in _RESERVED_FIELDS},
            )
    try:
        annotations = dict(own)
        annotations["parent"] = "Module | Scope | _Sentinel | None"
        annotations["name"] = "str | None"
        cls.__annotations__ = annotations
        type.__setattr__(
            cls,
            "parent",
            dataclasses.field(
                default=_unspecified_parent,
                kw_only=True,
                repr=False,
                compare=False,
                hash=False,
            ),
        )
        type.__setattr__(cls, "name", dataclasses.field(default=None, kw_only=True))
        dataclasses.dataclass(
            cls,
            repr=False,
            eq=True,
            unsafe_hash="__hash__" not in cls.__dict__,
            kw_only=kw_only,
        )
    finally:
        for base, fields in saved:
            type.__setattr__(base, "__dataclass_fields__", fields)


Module.__annotations__ = {"parent": "Module | Scope | _Sentinel | None", "name": "str | None"}
Module.parent = dataclasses.field(  # type: ignore[assignment]
    default=_unspecified_parent, kw_only=True, repr=False, compare=False, hash=False
)
Module.name = dataclasses.field(default=None, kw_only=True)  # type: ignore[assignment]
dataclasses.dataclass(Module, repr=False, eq=True, unsafe_hash=True)
Module.scope = None  # class-level default; every instance sets its own in __new__
