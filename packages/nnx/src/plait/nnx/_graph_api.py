"""nnx-level additions to plait.core's graph API (names Flax exposes on ``flax.nnx``).

Everything here is a small layer over core's ``split`` / ``merge`` / ``iter_graph``:
``GraphState`` pairs, pure trees, metadata setters, ``recursive_map``, Pytree checks and
the Variable-mode switches Flax has (plait Variables are plain boxes, so the hijax / ref
modes are refused with a clear error).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any, Generic, TypeVar

import jax
from plait.core import (
    All,
    GraphDef,
    Object,
    State,
    Variable,
    VariableError,
    clone,
    find_duplicates,
    is_data,
    is_graph_node,
    iter_graph,
    split,
)
from plait.core import merge as _core_merge
# core owns the switch because core's transforms resolve graph_updates=None through it.
from plait.core import set_graph_updates as set_graph_updates

A = TypeVar("A")
Node = TypeVar("Node")


def _is_variable(x: Any) -> bool:
    return isinstance(x, Variable)


# -- GraphState: a (graphdef, state) pair that behaves as the state -----------------------


class GraphState(MutableMapping, Generic[A]):  # noqa: UP046 - Flax-style TypeVar generics
    """A ``(GraphDef, State)`` pair that reads and writes like its State.

    ``nnx.unpack`` returns these and ``nnx.merge`` accepts them.

    Example:
      >>> import jax.numpy as jnp
      >>> from plait import nnx
      >>> class Foo(nnx.Module):
      ...   def __init__(self):
      ...     self.w = nnx.Param(jnp.ones(2))
      >>> gs = nnx.unpack(Foo())
      >>> list(gs), nnx.merge(gs).w.shape
      (['w'], (2,))
    """

    __slots__ = ("_graphdef", "_state")

    def __init__(self, _graphdef: GraphDef[A], _state: State):
        object.__setattr__(self, "_graphdef", _graphdef)
        object.__setattr__(self, "_state", _state)

    def __getitem__(self, key):
        return self._state[key]

    def __setitem__(self, key, value):
        self._state[key] = value

    def __delitem__(self, key):
        del self._state[key]

    def __iter__(self):
        return iter(self._state)

    def __len__(self):
        return len(self._state)

    def __contains__(self, key):
        return key in self._state

    def __getattr__(self, key: str):
        if key.startswith("__"):
            raise AttributeError(key)
        return getattr(self._state, key)

    def __setattr__(self, key: str, value) -> None:
        setattr(self._state, key, value)

    def __repr__(self) -> str:
        return f"GraphState({self._state!r})"


jax.tree_util.register_pytree_with_keys(
    GraphState,
    lambda gs: (((jax.tree_util.GetAttrKey("state"), gs._state),), gs._graphdef),
    lambda graphdef, children: GraphState(graphdef, children[0]),
)

PureState = tuple[GraphDef, State]


def unpack(node: A, *filters: Any, graph: bool | None = None):  # noqa: UP047 - Flax-style TypeVar generics
    """Like ``split``, but returns ``GraphState`` pairs (one per filter)."""
    graphdef, *states = split(node, *filters) if graph is None else split(node, *filters, graph=graph)
    pairs = tuple(GraphState(graphdef, s) for s in states)
    return pairs[0] if len(pairs) == 1 else pairs


def merge(graphdef_or_graphstate, /, *states: Any, copy: bool = False, recreate_variables: bool = True):
    """Builds a new graph from a GraphDef and States, or from ``GraphState`` pairs.

    Example:
      >>> import jax.numpy as jnp
      >>> from plait import nnx
      >>> class Foo(nnx.Module):
      ...   def __init__(self):
      ...     self.w = nnx.Param(jnp.ones(2))
      >>> foo = Foo()
      >>> nnx.merge(*nnx.split(foo)).w[...].tolist()
      [1.0, 1.0]
    """
    if isinstance(graphdef_or_graphstate, GraphState):
        parts = (graphdef_or_graphstate, *states)
        plain = [s._state if isinstance(s, GraphState) else s for s in parts]
        return _core_merge(
            graphdef_or_graphstate._graphdef,
            *plain,
            copy=copy,
            recreate_variables=recreate_variables,
        )
    return _core_merge(
        graphdef_or_graphstate, *states, copy=copy, recreate_variables=recreate_variables
    )


# -- Variables: metadata and modes ----------------------------------------------------------


def _refuse_modes(func: str, hijax: bool | None, ref: bool | None) -> None:
    if hijax or ref:
        raise VariableError(
            f"{func}(hijax={hijax}, ref={ref}): plait Variables are plain boxes; hijax and "
            "mutable-array (ref) Variables are not supported.\nFix: drop hijax/ref (the "
            "transforms lift Variables explicitly, so they are not needed)."
        )


def with_vars(  # noqa: UP047 - Flax-style TypeVar generics
    node: A,
    /,
    *,
    hijax: bool | None = None,
    ref: bool | None = None,
    mutable: bool | None = None,
    only: Any = ...,
    allow_duplicates: bool = False,
) -> A:
    """A copy of ``node`` with fresh Variables (plait has a single Variable mode).

    ``hijax=True`` / ``ref=True`` raise :class:`VariableError`. With
    ``allow_duplicates=False``, a Variable reachable by two paths among those selected by
    ``only`` is an error, as when Flax converts Variables to array refs.
    """
    _refuse_modes("with_vars", hijax, ref)
    del mutable  # every plait Variable is mutable outside transforms
    if not allow_duplicates:
        duplicates = find_duplicates(node, only=All(Variable, only))
        if duplicates:
            raise VariableError(
                f"with_vars(): Variables reachable by several paths: {duplicates}.\nFix: pass "
                "allow_duplicates=True, or stop sharing them."
            )
    return clone(node)


vars_as = with_vars


@dataclasses.dataclass(frozen=True)
class VarDefaults(Mapping):
    """The default Variable mode flags (always ``hijax=False, ref=False`` in plait)."""

    hijax: bool = False
    ref: bool = False

    def __getitem__(self, key: str) -> Any:
        if key not in ("hijax", "ref"):
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(("hijax", "ref"))

    def __len__(self) -> int:
        return 2


def var_defaults(*, hijax: bool | None = None, ref: bool | None = None):
    """The Variable mode defaults; with arguments, a context manager that sets them.

    plait supports only plain Variables: asking for ``hijax=True`` or ``ref=True`` raises.
    """
    if hijax is None and ref is None:
        return VarDefaults()
    _refuse_modes("var_defaults", hijax, ref)
    return contextlib.nullcontext(VarDefaults())


class _ConfigContext:
    """A flag value usable as a context manager or decorator, with a stack of values."""

    _stack: list[Any]
    _default: Any

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._stack = []

    def __init__(self, value, /):
        self.value = value
        self._apply_enter()

    def _apply_enter(self) -> None:
        type(self)._stack.append(self.value)
        self._changed(self.value)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        stack = type(self)._stack
        if stack:
            stack.pop()
        self._changed(type(self).current())

    def __call__(self, f: Callable[..., Any]) -> Callable[..., Any]:
        # Used as a decorator: the value applies only while ``f`` runs.
        self.__exit__(None, None, None)
        value = self.value
        cls = type(self)

        @functools.wraps(f)
        def wrapper(*args, **kwargs):
            with cls(value):
                return f(*args, **kwargs)

        return wrapper

    @classmethod
    def get_default(cls) -> Any:
        return cls._default

    @classmethod
    def get_stack(cls) -> list[Any]:
        return list(cls._stack)

    @classmethod
    def current(cls) -> Any:
        return cls._stack[-1] if cls._stack else cls._default

    def _changed(self, value: Any) -> None:
        """Hook: the effective value became ``value``."""


class use_eager_sharding(_ConfigContext):  # noqa: N801 - Flax's name
    """Whether Variables with ``sharding_names`` are placed on their mesh when created.

    ``with nnx.use_eager_sharding(False): ...`` builds Variables without placing them.
    """

    _default = True

    def _changed(self, value: Any) -> None:
        from plait.core import _variable

        if value:
            if getattr(use_eager_sharding, "_saved_fn", None) is not None:
                _variable.set_eager_sharding_fn(use_eager_sharding._saved_fn)
        else:
            current = _variable._eager_sharding_fn
            if current is not None:
                use_eager_sharding._saved_fn = current
            _variable.set_eager_sharding_fn(None)


def using_eager_sharding() -> bool:
    """Whether Variables are currently sharded eagerly at creation."""
    return bool(use_eager_sharding.current())


# -- traversals -------------------------------------------------------------------------------


def map(f: Callable[[tuple, Any], Any], node: A, /, *, graph: bool | None = None, recreate_variables: bool = True) -> A:  # noqa: UP047, A001 - Flax's name
    """A new graph like ``node`` whose state leaves are ``f(path, leaf)``.

    Example:
      >>> import jax.numpy as jnp
      >>> from plait import nnx
      >>> class Foo(nnx.Module):
      ...   def __init__(self):
      ...     self.w = nnx.Param(jnp.ones(2))
      >>> nnx.map(lambda path, v: v * 3, Foo()).w[...].tolist()
      [3.0, 3.0]
    """
    graphdef, state = split(node) if graph is None else split(node, graph=graph)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(state, is_leaf=_is_variable)
    new = []
    for key_path, leaf in leaves:
        path = tuple(getattr(k, "key", getattr(k, "idx", k)) for k in key_path)
        value = leaf.get_value() if _is_variable(leaf) else leaf
        result = f(path, value)
        new.append(leaf.replace(result) if _is_variable(leaf) and not _is_variable(result) else result)
    return _core_merge(graphdef, jax.tree_util.tree_unflatten(treedef, new))


# -- Pytree helpers ---------------------------------------------------------------------------


def has_data(value: Any, /) -> list[Any]:
    """The data (arrays, Variables, graph nodes) found inside ``value``; empty if none."""
    found = []
    for leaf in jax.tree.leaves(value, is_leaf=lambda x: _is_variable(x) or is_graph_node(x)):
        if is_data(leaf) or _is_variable(leaf) or is_graph_node(leaf):
            found.append(leaf)
    return found


def check_pytree(pytree) -> None:
    """Checks that no attribute marked static (``nnx.static``) holds data.

    Raises ``ValueError`` naming the object path and attribute, e.g. an array stored on an
    attribute declared ``Static[...]``, which would otherwise be baked into the GraphDef.
    """
    for path, node in iter_graph(pytree):
        if not isinstance(node, Object):
            continue
        kinds = node._plait_kinds or {}
        for name, value in vars(node).items():
            if kinds.get(name) is False and has_data(value):
                where = "/".join(str(p) for p in (*path, name))
                raise ValueError(
                    f"{type(node).__name__}.{name} (path '{where}') is marked static but "
                    f"holds data ({type(has_data(value)[0]).__name__}).\nFix: mark it "
                    "nnx.data(...), or store only hashable configuration values in it."
                )


def dataclass(
    cls=None,
    /,
    *,
    init: bool = True,
    eq: bool = True,
    order: bool = False,
    unsafe_hash: bool = False,
    match_args: bool = True,
    kw_only: bool = False,
    slots: bool = False,
    weakref_slot: bool = False,
):
    """``dataclasses.dataclass`` for ``nnx.Pytree`` / ``nnx.Module`` subclasses.

    Fields declared with ``nnx.data(...)`` / ``nnx.static(...)`` keep their classification.

    Example:
      >>> import jax.numpy as jnp
      >>> from plait import nnx
      >>> @nnx.dataclass
      ... class Point(nnx.Pytree):
      ...   x: jnp.ndarray
      ...   name: str = nnx.static(default="p")
      >>> Point(jnp.ones(2)).name
      'p'
    """
    options = dict(
        init=init, eq=eq, order=order, unsafe_hash=unsafe_hash, match_args=match_args,
        kw_only=kw_only, slots=slots, weakref_slot=weakref_slot,
    )

    def wrap(klass):
        if not (isinstance(klass, type) and issubclass(klass, Object)):
            raise TypeError(
                f"nnx.dataclass expects a subclass of nnx.Pytree/nnx.Module, got {klass!r}.\n"
                "Fix: subclass nnx.Pytree, or use plait.core.struct.dataclass for plain pytrees."
            )
        return dataclasses.dataclass(klass, **options)

    return wrap if cls is None else wrap(cls)


# -- graph-mode switches --------------------------------------------------------------------
