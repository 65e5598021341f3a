"""Object (= Pytree): the base class of stateful graph nodes; the structure epoch; the trace guard.

Attribute classification. An attribute is *data* when its value is a Variable, an array, a
graph node, or a list/tuple/dict (or other JAX pytree) containing one of those; everything
else is *static* and lives in the GraphDef. ``data(value)`` / ``static(value)`` (or
``Data[...]`` / ``Static[...]`` annotations and dataclass fields made with ``data()`` /
``static()``) override the automatic choice for one attribute.

Structure epoch. :func:`structure_epoch` returns a module-level counter that grows on every
structural change of any Object:

- every attribute set or delete on an Object, except re-assigning the very Variable object
  that is already there (``self.count = self.count`` after ``self.count += 1``);
- every mutation of a list or dict stored on an Object: plain ``list``/``dict`` values
  assigned to an attribute are converted to tracked subclasses (``isinstance(x, list)``
  still holds) whose mutating methods bump the epoch; nested lists/dicts are converted too;
- every ``merge``/``unflatten`` call (it creates objects without ``__setattr__``).

Changing a Variable's value (``v[...] = x``, ``v.value = x``) is not structural and does not
bump it. So a cache of (GraphDef, Variables) for a root object stays valid exactly while the
epoch is unchanged. Mutations that bypass ``__setattr__`` (``obj.__dict__[k] = v``,
``object.__setattr__``) or in-place changes of other mutable containers (sets, user classes)
are not seen: don't do that to a module between transform calls.

Trace guard. An Object remembers the JAX trace it was created in. Setting or deleting an
attribute from inside a different trace (e.g. mutating a module created outside
``jax.jit`` from inside it) raises :class:`TraceContextError`; plait's transforms lift state
explicitly and disable the guard with :func:`trace_guard_disabled`.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Annotated, Any, TypeVar

import jax
import numpy as np

from . import _compat
from ._errors import TRACE_CONTEXT, TraceContextError
from ._graphdef import freeze, graph_impl_for_type, register_graph_node_type, thaw
from ._variable import MISSING, Variable, set_metadata_hook

A = TypeVar("A")

DataAnnotation = "__data__"
StaticAnnotation = "__static__"
Data = Annotated[A, DataAnnotation]
Static = Annotated[A, StaticAnnotation]

# -- structure epoch ------------------------------------------------------------------------

_epoch = 0


def structure_epoch() -> int:
    """A counter that grows on every structural change of any Object (see module docs).

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.core import Object, Param, structure_epoch
        >>> class Foo(Object):
        ...     def __init__(self):
        ...         self.w = Param(jnp.zeros(2))
        ...         self.layers = []
        >>> foo = Foo(); e = structure_epoch()
        >>> foo.w[...] = jnp.ones(2); structure_epoch() == e   # value update: same structure
        True
        >>> foo.layers.append(Foo()); structure_epoch() > e     # list mutation: new structure
        True
    """
    return _epoch


def bump_structure_epoch() -> None:
    """Marks that some structure changed; call it after mutating an Object past ``__setattr__``.

    Containers that write an Object's ``__dict__`` directly (``nnx.List``) and code that
    swaps attributes wholesale call it, so caches keyed on :func:`structure_epoch` (the
    transforms' plans, the graph layer's flatten cache) see the change.

    Examples:
        >>> from plait.core import bump_structure_epoch, structure_epoch
        >>> before = structure_epoch(); bump_structure_epoch()
        >>> structure_epoch() > before
        True
    """
    global _epoch
    _epoch += 1


# A Variable's metadata is part of the GraphDef: changing it is a structural change.
set_metadata_hook(bump_structure_epoch)


# -- trace guard ----------------------------------------------------------------------------

_guard_disabled = 0


@contextlib.contextmanager
def trace_guard_disabled() -> Iterator[None]:
    """Lets code mutate Objects across JAX traces (for plait's own lifting engine).

    Examples:
        >>> from plait.core._object import trace_guard_disabled
        >>> with trace_guard_disabled():
        ...     pass
    """
    global _guard_disabled
    _guard_disabled += 1
    try:
        yield
    finally:
        _guard_disabled -= 1


def check_trace(obj: Object, name: Any) -> None:
    """Raises :class:`TraceContextError` if ``obj`` was created in another JAX trace.

    ``Object.__setattr__``/``__delattr__`` call it; containers that write an Object's
    ``__dict__`` directly call it too (``name`` is only used in the message). A no-op inside
    :func:`trace_guard_disabled`.

    Examples:
        >>> from plait.core import Object, check_trace
        >>> check_trace(Object(), "w")  # created in this (eager) context: fine
    """
    if _guard_disabled:
        return
    created = obj._plait_trace
    if created is not None and created != _compat.current_trace_state():
        raise TraceContextError(TRACE_CONTEXT.format(name=name, type_name=type(obj).__name__))


_check_trace = check_trace  # the name the lifting engine and older callers use


def refresh_trace_state(obj: Object) -> None:
    """Re-stamps ``obj`` as belonging to the current trace (for the lifting engine)."""
    object.__setattr__(obj, "_plait_trace", _compat.current_trace_state())


# -- data / static markers ------------------------------------------------------------------


class _Marked:
    __slots__ = ("value", "is_data")

    def __init__(self, value: Any, is_data: bool):
        self.value = value
        self.is_data = is_data

    def __repr__(self) -> str:
        return f"{'data' if self.is_data else 'static'}({self.value!r})"


def data(value: Any = MISSING, /, **kwargs: Any) -> Any:
    """Marks an attribute value as data (a State leaf / pytree child) regardless of its type.

    ``data(value)`` wraps a value for assignment; ``data(default=..., ...)`` (no value) makes a
    dataclass field with that marking.

    Examples:
        >>> from plait.core import Object, data, state
        >>> class Counter(Object):
        ...     def __init__(self):
        ...         self.steps = data(0)
        >>> state(Counter()).to_pure_dict()
        {'steps': 0}
    """
    if value is not MISSING:
        return _Marked(value, True)
    metadata = dict(kwargs.pop("metadata", None) or {})
    metadata["static"] = False
    return dataclasses.field(metadata=metadata, **kwargs)


def static(value: Any = MISSING, /, **kwargs: Any) -> Any:
    """Marks an attribute value as static (part of the GraphDef) regardless of its type.

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.core import Object, static, state
        >>> class Table(Object):
        ...     def __init__(self):
        ...         self.lookup = static(jnp.arange(3))
        >>> len(state(Table()))
        0
    """
    if value is not MISSING:
        return _Marked(value, False)
    metadata = dict(kwargs.pop("metadata", None) or {})
    metadata["static"] = True
    return dataclasses.field(metadata=metadata, **kwargs)


DATA_REGISTRY: set[type] = set()


def register_data_type(type_: type[A], /) -> type[A]:
    """Makes instances of ``type_`` count as data when auto-classifying attributes."""
    DATA_REGISTRY.add(type_)
    _is_data_cache.clear()
    return type_


# type -> True (always data) / False (never data) / None (look inside)
_is_data_cache: dict[type, bool | None] = {}


def _type_data_kind(t: type) -> bool | None:
    try:
        return _is_data_cache[t]
    except KeyError:
        pass
    if issubclass(t, Variable) or t in _compat.FAST_ARRAY_TYPES or issubclass(t, (jax.Array, np.ndarray)):
        kind: bool | None = True
    elif t in DATA_REGISTRY or graph_impl_for_type(t) is not None:
        kind = True
    elif t in (list, tuple, dict, TrackedList, TrackedDict):
        kind = None
    elif t in (int, float, complex, bool, str, bytes, type(None)) or isinstance(t, type) and issubclass(t, type):
        kind = False
    else:
        kind = None  # maybe a pytree: decided per value
    _is_data_cache[t] = kind
    return kind


def is_data(value: Any, /) -> bool:
    """Whether ``value`` is data: a Variable, an array, a graph node, or a pytree holding one.

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.core._object import is_data
        >>> is_data([1, jnp.ones(2)]), is_data([1, 2]), is_data("relu")
        (True, False, False)
    """
    t = type(value)
    kind = _type_data_kind(t)
    if kind is not None:
        return kind
    if t is list or t is tuple or t is TrackedList:
        return any(is_data(v) for v in value)
    if t is dict or t is TrackedDict:
        return any(is_data(v) for v in value.values())
    if isinstance(value, (Variable, jax.Array, np.ndarray)):
        return True
    if not _compat.is_jax_pytree_node(value):
        _is_data_cache[t] = False
        return False
    children, _ = _compat.flatten_one_level(value)
    return any(is_data(child) for _, child in children)


# -- tracked containers -----------------------------------------------------------------------


def track(value: Any) -> Any:
    """Converts plain lists/dicts (also nested in lists/dicts/tuples) into tracked ones.

    What ``Object.__setattr__`` does to every value; containers that store items in an
    Object's ``__dict__`` directly call it themselves. Tracked lists/dicts are subclasses of
    ``list``/``dict`` whose mutations bump the structure epoch.

    Examples:
        >>> from plait.core import track
        >>> tracked = track({"layers": [1, 2]})
        >>> isinstance(tracked["layers"], list), type(tracked["layers"]).__name__
        (True, 'TrackedList')
    """
    t = type(value)
    if t is list:
        return TrackedList(value)
    if t is dict:
        return TrackedDict(value)
    if t is tuple and any(type(v) in (list, dict, tuple) for v in value):
        return tuple(track(v) for v in value)
    return value


class TrackedList(list):  # type: ignore[type-arg]
    """A list stored on an Object: mutations bump the structure epoch. Behaves as a list."""

    __slots__ = ()

    def __init__(self, iterable: Any = ()):
        super().__init__(track(v) for v in iterable)

    def __setitem__(self, index: Any, value: Any) -> None:
        bump_structure_epoch()
        if isinstance(index, slice):
            value = [track(v) for v in value]
        else:
            value = track(value)
        super().__setitem__(index, value)

    def __delitem__(self, index: Any) -> None:
        bump_structure_epoch()
        super().__delitem__(index)

    def __iadd__(self, other: Any) -> TrackedList:
        self.extend(other)
        return self

    def __imul__(self, n: Any) -> TrackedList:
        bump_structure_epoch()
        return super().__imul__(n)  # type: ignore[return-value]

    def append(self, value: Any) -> None:
        bump_structure_epoch()
        super().append(track(value))

    def extend(self, values: Any) -> None:
        bump_structure_epoch()
        super().extend(track(v) for v in values)

    def insert(self, index: Any, value: Any) -> None:
        bump_structure_epoch()
        super().insert(index, track(value))

    def pop(self, index: Any = -1) -> Any:
        bump_structure_epoch()
        return super().pop(index)

    def remove(self, value: Any) -> None:
        bump_structure_epoch()
        super().remove(value)

    def clear(self) -> None:
        bump_structure_epoch()
        super().clear()

    def sort(self, *args: Any, **kwargs: Any) -> None:
        bump_structure_epoch()
        super().sort(*args, **kwargs)

    def reverse(self) -> None:
        bump_structure_epoch()
        super().reverse()

    def __reduce_ex__(self, protocol: Any) -> Any:  # copy.copy/deepcopy: stay tracked
        return (TrackedList, (list(self),))


class TrackedDict(dict):  # type: ignore[type-arg]
    """A dict stored on an Object: mutations bump the structure epoch. Behaves as a dict."""

    __slots__ = ()

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        for key, value in super().items():
            t = type(value)
            if t is list or t is dict or t is tuple:
                super().__setitem__(key, track(value))

    def __setitem__(self, key: Any, value: Any) -> None:
        bump_structure_epoch()
        super().__setitem__(key, track(value))

    def __delitem__(self, key: Any) -> None:
        bump_structure_epoch()
        super().__delitem__(key)

    def __ior__(self, other: Any) -> TrackedDict:
        self.update(other)
        return self

    def update(self, *args: Any, **kwargs: Any) -> None:
        bump_structure_epoch()
        for key, value in dict(*args, **kwargs).items():
            super().__setitem__(key, track(value))

    def setdefault(self, key: Any, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def pop(self, key: Any, *default: Any) -> Any:
        bump_structure_epoch()
        return super().pop(key, *default)

    def popitem(self) -> Any:
        bump_structure_epoch()
        return super().popitem()

    def clear(self) -> None:
        bump_structure_epoch()
        super().clear()

    def __reduce_ex__(self, protocol: Any) -> Any:
        return (TrackedDict, (dict(self),))


jax.tree_util.register_pytree_with_keys(
    TrackedList,
    lambda xs: ([(_compat.SequenceKey(i), x) for i, x in enumerate(xs)], None),
    lambda _, children: TrackedList(children),
    lambda xs: (list(xs), None),
)


def _tracked_dict_flatten_with_keys(d: TrackedDict) -> tuple[list[tuple[Any, Any]], tuple[Any, ...]]:
    keys = _sorted(d)
    return [(_compat.DictKey(k), d[k]) for k in keys], tuple(keys)


def _sorted(keys: Any) -> list[Any]:
    from ._state import sort_keys

    return sort_keys(keys)


jax.tree_util.register_pytree_with_keys(
    TrackedDict,
    _tracked_dict_flatten_with_keys,
    lambda keys, children: TrackedDict(zip(keys, children, strict=False)),
    lambda d: ([d[k] for k in _sorted(d)], tuple(_sorted(d))),
)


# -- Object -----------------------------------------------------------------------------------


def _class_kinds(cls: type) -> dict[str, bool]:
    """Explicit data/static choices declared on the class (dataclass fields, annotations)."""
    cached = cls.__dict__.get("_plait_class_kinds")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    kinds: dict[str, bool] = {}
    for klass in reversed(cls.__mro__):
        annotations = klass.__dict__.get("__annotations__", {})
        for name, annotation in annotations.items():
            if isinstance(annotation, str):
                if "Data[" in annotation or DataAnnotation in annotation:
                    kinds[name] = True
                elif "Static[" in annotation or StaticAnnotation in annotation:
                    kinds[name] = False
                continue
            for extra in getattr(annotation, "__metadata__", ()):
                if extra == DataAnnotation:
                    kinds[name] = True
                elif extra == StaticAnnotation:
                    kinds[name] = False
        for field in klass.__dict__.get("__dataclass_fields__", {}).values():
            if "static" in field.metadata:
                kinds[field.name] = not field.metadata["static"]
    type.__setattr__(cls, "_plait_class_kinds", kinds)
    return kinds


class Object:
    """Base class of stateful graph nodes (``nnx.Module`` subclasses it). Alias: ``Pytree``.

    Attributes hold Variables, arrays, sub-Objects, containers of them, and static values.
    ``split``/``merge`` treat an Object by reference (shared sub-objects stay shared), and the
    class is also a JAX pytree (data attributes are children, static ones aux data), which is
    what tree mode (``graph=False``) uses. Subclasses can opt out of the JAX registration with
    ``class Foo(Object, pytree=False)``.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from plait.core import Object, Param, split, merge
        >>> class Linear(Object):
        ...     def __init__(self, n):
        ...         self.w = Param(jnp.ones((n, n)))
        ...         self.n = n
        >>> graphdef, state = split(Linear(2))
        >>> merge(graphdef, state).n
        2
        >>> jax.tree.leaves(Linear(2))[0].shape
        (2, 2)
    """

    __slots__ = ("__dict__", "__weakref__", "_plait_trace", "_plait_kinds")

    def __init_subclass__(cls, pytree: bool = True, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if pytree:
            jax.tree_util.register_pytree_with_keys(
                cls, _object_flatten_with_keys, _object_unflatten, _object_flatten
            )

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        obj = object.__new__(cls)
        object.__setattr__(obj, "_plait_trace", _compat.current_trace_state())
        object.__setattr__(obj, "_plait_kinds", None)
        return obj

    def __setattr__(self, name: str, value: Any) -> None:
        if not _guard_disabled:
            _check_trace(self, name)
        if type(value) is _Marked:
            kinds = self._plait_kinds
            if kinds is None:
                kinds = dict(_class_kinds(type(self)))
                object.__setattr__(self, "_plait_kinds", kinds)
            kinds[name] = value.is_data
            value = value.value
        elif self._plait_kinds is None and _class_kinds(type(self)):
            object.__setattr__(self, "_plait_kinds", dict(_class_kinds(type(self))))
        t = type(value)
        if t is list or t is dict or t is tuple:
            value = track(value)
        if not (isinstance(value, Variable) and self.__dict__.get(name) is value):
            global _epoch
            _epoch += 1
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        if not _guard_disabled:
            _check_trace(self, name)
        global _epoch
        _epoch += 1
        object.__delattr__(self, name)

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        from ._graph import clone

        return clone(self)

    def __repr__(self) -> str:
        return _object_repr(self, set(), 0)


Pytree = Object


def _object_repr(obj: Object, seen: set[int], depth: int) -> str:
    name = type(obj).__name__
    if id(obj) in seen:
        return f"{name}(...)"
    seen = seen | {id(obj)}
    items = sorted_items(vars(obj))
    if not items:
        return f"{name}()"
    pad = "  " * (depth + 1)
    lines = [f"{name}("]
    for key, value in items:
        if isinstance(value, Object):
            text = _object_repr(value, seen, depth + 1)
        else:
            text = repr(value).replace("\n", "\n" + pad)
        lines.append(f"{pad}{key}={text},")
    return "\n".join(lines) + "\n" + "  " * depth + ")"


def _attribute_is_data(kinds: dict[str, bool] | None, name: str, value: Any) -> bool:
    if kinds is not None:
        kind = kinds.get(name)
        if kind is not None:
            return kind
    return is_data(value)


def sorted_items(attrs: dict[Any, Any]) -> list[tuple[Any, Any]]:
    """An object's attributes in plait's key order (string keys, or ints as in nnx.List)."""
    try:
        return sorted(attrs.items())
    except TypeError:  # keys of mixed types
        return [(k, attrs[k]) for k in _sorted(attrs)]


def _attr_key(name: Any) -> Any:
    if isinstance(name, str):
        return _compat.GetAttrKey(name)
    if isinstance(name, int):
        return _compat.SequenceKey(name)
    return _compat.DictKey(name)


def _object_flatten_with_keys(obj: Object) -> tuple[list[tuple[Any, Any]], tuple[Any, ...]]:
    kinds = obj._plait_kinds
    children: list[tuple[Any, Any]] = []
    data_names: list[str] = []
    statics: list[tuple[str, Any]] = []
    for name, value in sorted_items(obj.__dict__):
        if _attribute_is_data(kinds, name, value):
            data_names.append(name)
            children.append((_attr_key(name), value))
        else:
            statics.append((name, freeze(value)))
    aux = (type(obj), tuple(data_names), tuple(statics), freeze_kinds(kinds))
    return children, aux


def _object_flatten(obj: Object) -> tuple[list[Any], tuple[Any, ...]]:
    with_keys, aux = _object_flatten_with_keys(obj)
    return [child for _, child in with_keys], aux


def _object_unflatten(aux: tuple[Any, ...], children: Any) -> Object:
    cls, data_names, statics, kinds = aux
    obj = new_object(cls, thaw_kinds(kinds))
    attrs = obj.__dict__
    for name, value in statics:
        attrs[name] = thaw(value)
    for name, value in zip(data_names, children, strict=False):
        attrs[name] = value
    return obj


def freeze_kinds(kinds: dict[str, bool] | None) -> tuple[tuple[str, bool], ...] | None:
    return tuple(sorted(kinds.items())) if kinds else None


def thaw_kinds(kinds: tuple[tuple[str, bool], ...] | None) -> dict[str, bool] | None:
    return dict(kinds) if kinds else None


def new_object(cls: type, kinds: dict[str, bool] | None = None) -> Any:
    """An empty instance of an Object subclass, without running ``__init__``."""
    obj = object.__new__(cls)
    object.__setattr__(obj, "_plait_trace", _compat.current_trace_state())
    object.__setattr__(obj, "_plait_kinds", kinds)
    return obj


jax.tree_util.register_pytree_with_keys(Object, _object_flatten_with_keys, _object_unflatten, _object_flatten)


# Graph-node implementation of Object (the graph layer has a faster inline path for it; this
# entry makes is_graph_node/iteration/pop/update uniform).
def _object_graph_flatten(obj: Object) -> tuple[list[tuple[str, Any]], Any]:
    return sorted_items(obj.__dict__), (type(obj), freeze_kinds(obj._plait_kinds))


def _object_set_key(obj: Object, key: str, value: Any) -> None:
    setattr(obj, key, value)


def _object_pop_key(obj: Object, key: str) -> Any:
    value = obj.__dict__[key]
    delattr(obj, key)
    return value


def _object_create_empty(metadata: Any) -> Object:
    cls, kinds = metadata
    return new_object(cls, thaw_kinds(kinds))  # type: ignore[no-any-return]


def _object_clear(obj: Object) -> None:
    for key in list(obj.__dict__):
        delattr(obj, key)


def _object_init(obj: Object, items: Any) -> None:
    obj.__dict__.update(items)


register_graph_node_type(
    Object,
    _object_graph_flatten,
    _object_set_key,
    _object_pop_key,
    _object_create_empty,
    _object_clear,
    _object_init,
)
