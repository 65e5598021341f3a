"""Variable: a mutable box around a value plus metadata; the unit of state of an object graph.

A Variable is a JAX pytree node whose only child is its value and whose aux data is its type
and metadata, so ``jax.tree.map(f, state)`` maps values and keeps Variable types and
metadata. Variables compare and hash by identity: the graph layer relies on that to find
shared references.

The collection registry maps Linen collection names to Variable types (``"params"`` ↔
``Param``...), so both front ends name the same kinds of state the same way.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from . import _compat
from ._errors import VariableError

A = TypeVar("A")
F = TypeVar("F", bound=Callable[..., Any])


class _Missing:
    """Sentinel for "argument not given" where ``None`` is a meaningful value."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __reduce__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()

HOOK_NAMES = ("on_set_value", "on_get_value", "on_create_value", "on_add_axis", "on_remove_axis")
# Metadata keys Flax always carries; `get_metadata(exclude_required=True)` leaves them out.
REQUIRED_METADATA = frozenset({"eager_sharding", "hijax", "ref"})

# Set by the sharding layer (section B) to place a freshly created value on its mesh when
# the Variable has `sharding_names` and eager sharding is on. Signature: (variable, value) -> value.
_eager_sharding_fn: Callable[[Any, Any], Any] | None = None


def set_eager_sharding_fn(fn: Callable[[Any, Any], Any] | None) -> None:
    """Installs the function that shards a new Variable's value eagerly (used by _sharding)."""
    global _eager_sharding_fn
    _eager_sharding_fn = fn


def get_eager_sharding_fn() -> Callable[[Any, Any], Any] | None:
    """The installed eager-sharding function (``None``: Variables are not placed at creation)."""
    return _eager_sharding_fn


def _no_structure_hook() -> None:
    pass


# Called after a Variable's metadata changes. _object installs bump_structure_epoch: metadata
# is part of the GraphDef, so caches keyed on the structure epoch must see the change.
_metadata_changed: Callable[[], None] = _no_structure_hook


def set_metadata_hook(fn: Callable[[], None]) -> None:
    """Installs the function called whenever some Variable's metadata changes (used by _object)."""
    global _metadata_changed
    _metadata_changed = fn


def _same_metadata(mine: dict[str, Any], theirs: dict[str, Any]) -> bool:
    """Equal metadata, comparing values by identity first (they may be arrays)."""
    if mine is theirs:
        return True
    if len(mine) != len(theirs):
        return False
    for key, value in mine.items():
        other = theirs.get(key, MISSING)
        if value is other:
            continue
        if other is MISSING or type(value) is not type(other):
            return False
        try:
            if not bool(value == other):
                return False
        except Exception:  # noqa: BLE001 - e.g. arrays: compare as different
            return False
    return True


def _as_hook_tuple(hooks: Any) -> tuple[Callable[..., Any], ...]:
    if callable(hooks):
        return (hooks,)
    return tuple(hooks)


@dataclasses.dataclass
class VariableMetadata(Generic[A]):
    """A value plus the metadata and hooks a Variable built from it should carry.

    Initializers wrapped with :func:`with_metadata` return one; ``Variable(md)`` unpacks it.

    Examples:
        >>> from plait.core import Param, VariableMetadata
        >>> p = Param(VariableMetadata(1.0, metadata={"sharding_names": ("a",)}))
        >>> p.sharding_names
        ('a',)
    """

    raw_value: A
    on_set_value: tuple[Callable[..., Any], ...] = ()
    on_get_value: tuple[Callable[..., Any], ...] = ()
    on_create_value: tuple[Callable[..., Any], ...] = ()
    on_add_axis: tuple[Callable[..., Any], ...] = ()
    on_remove_axis: tuple[Callable[..., Any], ...] = ()
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def _vm_flatten(md: VariableMetadata[Any]) -> tuple[tuple[Any], tuple[Any, ...]]:
    aux = tuple(getattr(md, name) for name in HOOK_NAMES) + (tuple(md.metadata.items()),)
    return (md.raw_value,), aux


def _vm_unflatten(aux: tuple[Any, ...], children: Sequence[Any]) -> VariableMetadata[Any]:
    *hooks, items = aux
    return VariableMetadata(children[0], *hooks, metadata=dict(items))


jax.tree_util.register_pytree_node(VariableMetadata, _vm_flatten, _vm_unflatten)


def with_metadata(
    initializer: F,
    on_set_value: Any = (),
    on_get_value: Any = (),
    on_create_value: Any = (),
    on_add_axis: Any = (),
    on_remove_axis: Any = (),
    **metadata: Any,
) -> F:
    """Wraps an initializer so that the Variable built from its result carries ``metadata``.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from plait.core import Param, with_metadata
        >>> init = with_metadata(jax.nn.initializers.ones, sharding_names=("in", "out"))
        >>> p = Param(init(jax.random.key(0), (2, 3)))
        >>> p.sharding_names, p.shape
        (('in', 'out'), (2, 3))
    """
    if "sharding" in metadata:
        metadata["sharding_names"] = metadata.pop("sharding")
    hooks = {
        "on_set_value": _as_hook_tuple(on_set_value),
        "on_get_value": _as_hook_tuple(on_get_value),
        "on_create_value": _as_hook_tuple(on_create_value),
        "on_add_axis": _as_hook_tuple(on_add_axis),
        "on_remove_axis": _as_hook_tuple(on_remove_axis),
    }

    def wrapper(*args: Any, **kwargs: Any) -> VariableMetadata[Any]:
        value = initializer(*args, **kwargs)
        if isinstance(value, VariableMetadata):  # nested with_metadata: merge, inner first
            merged_hooks = {k: getattr(value, k) + v for k, v in hooks.items()}
            return VariableMetadata(
                value.raw_value, **merged_hooks, metadata={**value.metadata, **metadata}
            )
        return VariableMetadata(value, **hooks, metadata=dict(metadata))

    wrapper.__name__ = getattr(initializer, "__name__", "initializer")
    wrapper.__doc__ = getattr(initializer, "__doc__", None)
    return wrapper  # type: ignore[return-value]


class _VariableAux:
    """Pytree aux data of a Variable: its type and a private copy of its metadata.

    Hashes by type and metadata keys only (values may be unhashable, e.g. arrays); equality
    compares the metadata values too. ``metadata`` is never mutated: a Variable caches its
    aux, and Variables built by unflatten share this dict until their first metadata write
    (see ``_writable_metadata``).
    """

    __slots__ = ("type", "metadata", "_hash")

    def __init__(self, var_type: type, metadata: dict[str, Any]):
        self.type = var_type
        self.metadata = metadata
        self._hash = hash((var_type, tuple(metadata)))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if self is other:  # the usual case once auxes are cached: skip the per-key compare
            return True
        if not isinstance(other, _VariableAux):
            return NotImplemented
        if self.type is not other.type:
            return False
        if self.metadata is other.metadata:
            return True
        if self.metadata.keys() != other.metadata.keys():
            return False
        for key, value in self.metadata.items():
            other_value = other.metadata[key]
            if value is other_value:
                continue
            try:
                if not bool(value == other_value):
                    return False
            except Exception:  # e.g. arrays of different shapes: not equal
                return False
        return True

    def __repr__(self) -> str:
        return f"{self.type.__name__}{self.metadata!r}"


_VALUE_KEY = _compat.GetAttrKey("value")


def _new_variable(var_type: type, raw_value: Any, metadata: dict[str, Any]) -> Any:
    """Builds a Variable without running __init__ (no hooks, no validation)."""
    var = _NEW(var_type)
    _RAW_SET(var, raw_value)
    _META_SET(var, metadata)
    _AUX_SET(var, None)
    return var


# JAX flattens every Variable at every jit call: the cached aux makes that a slot read and
# lets treedef equality hit _VariableAux.__eq__'s identity shortcut. The slot is unset only
# for Variables made by object.__new__ outside plait.core (slow path, still correct); the type
# check catches __class__ assignment. The two flatten functions repeat the lookup instead of
# sharing a helper on purpose: one more Python call per Variable measured 5-10% of a
# 1,500-Variable State flatten.
def _variable_flatten_with_keys(var: Variable[Any]) -> tuple[tuple[tuple[Any, Any]], Any]:
    try:
        aux = _AUX_GET(var)
    except AttributeError:
        aux = None
    if aux is None or aux.type is not type(var):
        aux = _VariableAux(type(var), dict(var._var_metadata))
        _AUX_SET(var, aux)
    return ((_VALUE_KEY, var._raw_value),), aux


def _variable_flatten(var: Variable[Any]) -> tuple[tuple[Any], Any]:
    try:
        aux = _AUX_GET(var)
    except AttributeError:
        aux = None
    if aux is None or aux.type is not type(var):
        aux = _VariableAux(type(var), dict(var._var_metadata))
        _AUX_SET(var, aux)
    return (var._raw_value,), aux


def _variable_unflatten(aux: _VariableAux, children: Sequence[Any]) -> Any:
    # Copy-on-write: share the aux's dict (never mutated) and reuse the aux as the cache;
    # _writable_metadata takes a private copy before the first write.
    var = _NEW(aux.type)
    _RAW_SET(var, children[0])
    _META_SET(var, aux.metadata)
    _AUX_SET(var, aux)
    return var


def _writable_metadata(var: Variable[Any]) -> dict[str, Any]:
    """The Variable's metadata dict, ready for an in-place write.

    Every write to ``_var_metadata`` goes through here: it drops the cached aux and, if the
    dict is still shared with that aux (built by unflatten), replaces it with a private copy.
    Raises AttributeError when the Variable has no metadata yet.
    """
    metadata = _META_GET(var)
    try:
        aux = _AUX_GET(var)
    except AttributeError:
        aux = None
    if aux is not None:
        _AUX_SET(var, None)
        if aux.metadata is metadata:
            metadata = dict(metadata)
            _META_SET(var, metadata)
    return metadata


def _register_variable_pytree(cls: type) -> None:
    jax.tree_util.register_pytree_with_keys(
        cls, _variable_flatten_with_keys, _variable_unflatten, _variable_flatten
    )


def _data_descriptor_names(cls: type) -> frozenset[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        for name, attr in vars(klass).items():
            if hasattr(attr, "__set__"):
                names.add(name)
    return frozenset(names)


def _short_repr(value: Any) -> str:
    if _compat.is_array(value):
        shape = tuple(value.shape)
        if int(np.prod(shape, dtype=np.int64)) <= 8 and not isinstance(value, jax.core.Tracer):
            return repr(value)
        kind = "Array" if isinstance(value, jax.Array) else type(value).__name__
        return f"{kind}(shape={shape}, dtype={value.dtype})"
    return repr(value)


class Variable(Generic[A]):
    """A mutable box around a value (usually an array) plus a metadata dict.

    Args:
        value: the initial value, or a :class:`VariableMetadata` carrying value and metadata.
        eager_sharding: whether to place the value on its mesh at creation when it has
            ``sharding_names`` (``None``: the global default).
        **metadata: arbitrary metadata, readable as attributes (``v.sharding_names``).
            ``sharding`` is accepted as a legacy alias of ``sharding_names``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.core import Param
        >>> w = Param(jnp.ones((2, 3)), sharding_names=("in", "out"))
        >>> w.shape, w.sharding_names
        ((2, 3), ('in', 'out'))
        >>> w[...] = w[...] * 2
        >>> float(w.sum())
        12.0
    """

    # _var_aux: the cached pytree aux (None: not built); never metadata, never copied.
    __slots__ = ("_raw_value", "_var_metadata", "_var_aux", "__weakref__")

    required_metadata = REQUIRED_METADATA
    _plait_own_attrs: frozenset[str] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _register_variable_pytree(cls)
        cls._plait_own_attrs = _data_descriptor_names(cls)

    def __init__(
        self,
        value: A | VariableMetadata[A],
        *,
        hijax: bool | None = None,
        ref: bool | None = None,
        eager_sharding: bool | None = None,
        **metadata: Any,
    ):
        if hijax or ref:
            raise VariableError(
                f"{type(self).__name__}(hijax={hijax}, ref={ref}): plait Variables are plain "
                "boxes; hijax and mutable-array (ref) Variables are not supported.\n"
                "Fix: drop the hijax/ref arguments."
            )
        if "sharding" in metadata:
            if "sharding_names" in metadata:
                raise VariableError(
                    f"{type(self).__name__}() got both 'sharding' and 'sharding_names'; "
                    "'sharding' is a legacy alias. Fix: pass only sharding_names=..."
                )
            metadata["sharding_names"] = metadata.pop("sharding")
        if isinstance(value, VariableMetadata):
            metadata = {**value.metadata, **metadata}
            for name in HOOK_NAMES:
                hooks = getattr(value, name)
                if hooks:
                    metadata[name] = tuple(metadata.get(name, ())) + tuple(hooks)
            value = value.raw_value
        for name in HOOK_NAMES:
            if name in metadata:
                metadata[name] = _as_hook_tuple(metadata[name])
        if eager_sharding is not None:
            metadata["eager_sharding"] = eager_sharding
        try:  # keep metadata a subclass set before calling super().__init__
            metadata = {**object.__getattribute__(self, "_var_metadata"), **metadata}
        except AttributeError:
            pass
        object.__setattr__(self, "_var_metadata", metadata)
        object.__setattr__(self, "_var_aux", None)
        object.__setattr__(self, "_raw_value", value)
        value = self.create_value(value)
        if (
            _eager_sharding_fn is not None
            and metadata.get("sharding_names") is not None
            and eager_sharding is not False
        ):
            value = _eager_sharding_fn(self, value)
        object.__setattr__(self, "_raw_value", value)

    # -- metadata as attributes ------------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            metadata = object.__getattribute__(self, "_var_metadata")
            value = object.__getattribute__(self, "_raw_value")
        except AttributeError:
            raise AttributeError(name) from None
        if name in metadata:
            return metadata[name]
        try:
            return getattr(value, name)
        except AttributeError:
            raise AttributeError(
                f"{type(self).__name__} has no metadata or attribute {name!r}, and its value "
                f"of type {type(value).__name__} has no attribute {name!r} either. "
                f"Metadata keys: {sorted(metadata)}."
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name in type(self)._plait_own_attrs:
            object.__setattr__(self, name, value)
            if name == "_var_metadata":
                _AUX_SET(self, None)
            return
        try:
            _writable_metadata(self)[name] = value
        except AttributeError:  # a subclass __init__ setting metadata before super().__init__
            object.__setattr__(self, "_var_metadata", {name: value})
            _AUX_SET(self, None)
        _metadata_changed()

    def __delattr__(self, name: str) -> None:
        if name in type(self)._plait_own_attrs:
            object.__delattr__(self, name)
            if name == "_var_metadata":
                _AUX_SET(self, None)
        elif name in self._var_metadata:
            del _writable_metadata(self)[name]
            _metadata_changed()
        else:
            raise AttributeError(f"{type(self).__name__} has no metadata {name!r}")

    def get_metadata(
        self, name: str | None = None, default: Any = MISSING, *, exclude_required: bool | None = None
    ) -> Any:
        """Returns one metadata value (``name`` given) or a copy of the metadata dict."""
        if name is None:
            if exclude_required:
                return {k: v for k, v in self._var_metadata.items() if k not in REQUIRED_METADATA}
            return dict(self._var_metadata)
        if name in self._var_metadata:
            return self._var_metadata[name]
        if default is not MISSING:
            return default
        raise VariableError(
            f"{type(self).__name__} has no metadata {name!r}; it has {sorted(self._var_metadata)}. "
            f"Fix: pass a default, get_metadata({name!r}, None)."
        )

    def set_metadata(self, *args: Any, **kwargs: Any) -> None:
        """Sets metadata: ``set_metadata(name, value)``, ``set_metadata(dict)`` or ``**kwargs``."""
        if args:
            if len(args) == 2 and isinstance(args[0], str) and not kwargs:
                kwargs = {args[0]: args[1]}
            elif len(args) == 1 and isinstance(args[0], Mapping) and not kwargs:
                kwargs = dict(args[0])
            else:
                raise VariableError(
                    "set_metadata() takes (name, value), (mapping,) or keyword arguments; got "
                    f"{len(args)} positional and {len(kwargs)} keyword arguments."
                )
        if "sharding" in kwargs:
            kwargs["sharding_names"] = kwargs.pop("sharding")
        for name in HOOK_NAMES:
            if name in kwargs:
                kwargs[name] = _as_hook_tuple(kwargs[name])
        _writable_metadata(self).update(kwargs)
        _metadata_changed()

    def has_metadata(self, name: str) -> bool:
        return name in self._var_metadata

    def del_metadata(self, name: str) -> None:
        if name not in self._var_metadata:
            raise VariableError(f"{type(self).__name__} has no metadata {name!r} to delete.")
        del _writable_metadata(self)[name]
        _metadata_changed()

    @property
    def sharding_names(self) -> Any:
        return self._var_metadata.get("sharding_names")

    @sharding_names.setter
    def sharding_names(self, names: Any) -> None:
        _writable_metadata(self)["sharding_names"] = names
        _metadata_changed()

    @property
    def type(self) -> type[Variable[Any]]:
        return type(self)

    @property
    def var_type(self) -> type[Variable[Any]]:
        return type(self)

    @property
    def hijax(self) -> bool:
        return False

    @property
    def ref(self) -> bool:
        return False

    # -- value ------------------------------------------------------------------------------

    def get_raw_value(self) -> A:
        return self._raw_value

    def set_raw_value(self, value: A, *, _unsafe_bypass_check: bool = False) -> None:
        object.__setattr__(self, "_raw_value", value)

    @property
    def raw_value(self) -> A:
        return self._raw_value

    @raw_value.setter
    def raw_value(self, value: A) -> None:
        object.__setattr__(self, "_raw_value", value)

    def create_value(self, value: A) -> A:
        for hook in self._var_metadata.get("on_create_value", ()):
            value = hook(self, value)
        return value

    def get_value(self, *, index: Any = MISSING) -> A:
        value = self._raw_value
        hooks = self._var_metadata.get("on_get_value")
        if hooks:
            for hook in hooks:
                value = hook(self, value)
        if index is MISSING or (index is Ellipsis and not _compat.is_array(value)):
            return value
        return value[index]  # type: ignore[index]

    def set_value(self, value: A, *, index: Any = MISSING) -> None:
        if index is not MISSING:
            value = _set_at(self._raw_value, index, value)
        hooks = self._var_metadata.get("on_set_value")
        if hooks:
            for hook in hooks:
                value = hook(self, value)
        object.__setattr__(self, "_raw_value", value)

    @property
    def value(self) -> A:
        return self.get_value()

    @value.setter
    def value(self, value: A) -> None:
        self.set_value(value)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._raw_value.shape)  # type: ignore[attr-defined]

    def __getitem__(self, key: Any) -> Any:
        return self.get_value(index=key)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.set_value(value, index=key)

    def __delitem__(self, key: Any) -> None:
        del self._raw_value[key]  # type: ignore[attr-defined]

    # -- copies -----------------------------------------------------------------------------

    def copy(self, value: Any = MISSING, *, _copy_ref: bool = True, **updates: Any) -> Variable[Any]:
        """A new Variable of the same type with the same (or updated) value and metadata."""
        if "sharding" in updates:
            updates["sharding_names"] = updates.pop("sharding")
        metadata = dict(self._var_metadata)
        metadata.update(updates)
        return _new_variable(type(self), self._raw_value if value is MISSING else value, metadata)

    def replace(self, value: Any = MISSING, *, _copy_ref: bool = True, **updates: Any) -> Variable[Any]:
        """Like :meth:`copy`: ``v.replace(new_value)`` or ``v.replace(sharding_names=...)``."""
        return self.copy(value, **updates)

    to_state = replace

    def copy_from(self, other: Variable[A]) -> None:
        """Makes this Variable's value and metadata equal to ``other``'s (in place).

        Only a real metadata change counts as a structural change (bumps the structure epoch).
        """
        _RAW_SET(self, other._raw_value)
        mine = self._var_metadata
        theirs = other._var_metadata
        if (mine or theirs) and not _same_metadata(mine, theirs):
            mine = _writable_metadata(self)
            mine.clear()
            mine.update(theirs)
            _metadata_changed()

    def update_from_state(self, variable_state: Variable[A]) -> None:
        self.copy_from(variable_state)

    @classmethod
    def from_metadata(cls, value: A, attributes: Mapping[str, Any]) -> Variable[A]:
        return _new_variable(cls, value, dict(attributes))

    # -- axis hooks (used by lifted vmap/scan) ----------------------------------------------

    def add_axis(self, axis_index: int, axis_name: Any) -> None:
        for hook in self._var_metadata.get("on_add_axis", ()):
            hook(self, axis_index, axis_name)

    def remove_axis(self, axis_index: int, axis_name: Any) -> None:
        for hook in self._var_metadata.get("on_remove_axis", ()):
            hook(self, axis_index, axis_name)

    # -- python protocols -------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        return {"raw_value": self._raw_value, "metadata": self._var_metadata}

    def __setstate__(self, state: dict[str, Any]) -> None:
        object.__setattr__(self, "_raw_value", state["raw_value"])
        # copy.copy hands over the original's dict itself: take a private one
        object.__setattr__(self, "_var_metadata", dict(state["metadata"]))
        object.__setattr__(self, "_var_aux", None)
        _metadata_changed()

    def __repr__(self) -> str:
        metadata = {k: v for k, v in self._var_metadata.items() if k not in HOOK_NAMES}
        if not metadata:
            return f"{type(self).__name__}(value={_short_repr(self._raw_value)})"
        lines = [f"{type(self).__name__}(", f"  value={_short_repr(self._raw_value)},"]
        lines += [f"  {k}={v!r}," for k, v in metadata.items()]
        return "\n".join(lines) + "\n)"

    def __jax_array__(self) -> Any:
        return self.get_value()

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.asarray(self.get_value(), dtype=dtype)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.get_value()(*args, **kwargs)  # type: ignore[operator]

    def __len__(self) -> int:
        return len(self.get_value())  # type: ignore[arg-type]

    def __iter__(self) -> Any:
        return iter(self.get_value())  # type: ignore[call-overload]

    def __contains__(self, item: Any) -> bool:
        return item in self.get_value()  # type: ignore[operator]

    def __bool__(self) -> bool:
        return bool(self.get_value())

    def __index__(self) -> int:
        return operator.index(self.get_value())

    def __int__(self) -> int:
        return int(self.get_value())  # type: ignore[call-overload]

    def __float__(self) -> float:
        return float(self.get_value())  # type: ignore[arg-type]

    def __complex__(self) -> complex:
        return complex(self.get_value())  # type: ignore[arg-type]

    def __format__(self, spec: str) -> str:
        if not spec:
            return repr(self)
        return format(self.get_value(), spec)


def _set_at(current: Any, index: Any, new: Any) -> Any:
    """``current[index] = new`` for immutable JAX arrays (functional) and mutable containers."""
    if index is Ellipsis:
        if isinstance(current, jax.Array) and not _compat.is_array(new) and np.ndim(new) == 0:
            # `v[...] = 0.0` on an array Variable fills it, keeping shape and dtype (numpy rule).
            return jnp.full(current.shape, new, dtype=current.dtype)
        return new
    if isinstance(current, jax.Array):
        return current.at[index].set(new)
    if isinstance(current, np.ndarray):
        updated = current.copy()
        updated[index] = new
        return updated
    current[index] = new
    return current


def _value_of(x: Any) -> Any:
    return x.get_value() if isinstance(x, Variable) else x


def _binary(op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def method(self: Variable[Any], other: Any) -> Any:
        return op(self.get_value(), _value_of(other))

    return method


def _reflected(op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def method(self: Variable[Any], other: Any) -> Any:
        return op(_value_of(other), self.get_value())

    return method


def _inplace(op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    # `v += x` updates the value and keeps the same Variable object (no structural change).
    def method(self: Variable[Any], other: Any) -> Any:
        self.set_value(op(self.get_value(), _value_of(other)))
        return self

    return method


def _unary(op: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def method(self: Variable[Any]) -> Any:
        return op(self.get_value())

    return method


_BINARY_OPS = {
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "matmul": operator.matmul,
    "truediv": operator.truediv,
    "floordiv": operator.floordiv,
    "mod": operator.mod,
    "pow": operator.pow,
    "lshift": operator.lshift,
    "rshift": operator.rshift,
    "and": operator.and_,
    "or": operator.or_,
    "xor": operator.xor,
}
for _name, _op in _BINARY_OPS.items():
    setattr(Variable, f"__{_name}__", _binary(_op))
    setattr(Variable, f"__r{_name}__", _reflected(_op))
    setattr(Variable, f"__i{_name}__", _inplace(_op))
Variable.__divmod__ = _binary(divmod)
Variable.__rdivmod__ = _reflected(divmod)
# Ordering compares values; == and != stay identity-based so Variables can be dict keys.
for _name, _op in {"lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge}.items():
    setattr(Variable, f"__{_name}__", _binary(_op))
for _name, _op in {
    "neg": operator.neg,
    "pos": operator.pos,
    "abs": operator.abs,
    "invert": operator.invert,
}.items():
    setattr(Variable, f"__{_name}__", _unary(_op))
Variable.__round__ = lambda self, ndigits=None: round(self.get_value(), ndigits)

_register_variable_pytree(Variable)
Variable._plait_own_attrs = _data_descriptor_names(Variable)
_NEW = object.__new__
# Slot accessors, also used by the graph modules to copy Variables without __init__; every
# copy sets _var_aux (an unset slot costs an exception at its first flatten).
_RAW_SET = Variable.__dict__["_raw_value"].__set__
_META_GET = Variable.__dict__["_var_metadata"].__get__
_META_SET = Variable.__dict__["_var_metadata"].__set__
_AUX_GET = Variable.__dict__["_var_aux"].__get__
_AUX_SET = Variable.__dict__["_var_aux"].__set__


class Param(Variable[A]):
    """A trainable parameter (Linen collection ``"params"``)."""

    __slots__ = ()


class BatchStat(Variable[A]):
    """A running statistic such as BatchNorm's mean (collection ``"batch_stats"``)."""

    __slots__ = ()


class Cache(Variable[A]):
    """Decoding cache state (collection ``"cache"``)."""

    __slots__ = ()


class Intermediate(Variable[A]):
    """A value recorded with ``sow`` (collection ``"intermediates"``)."""

    __slots__ = ()


class Perturbation(Intermediate[A]):
    """A zero-valued perturbation to read gradients of intermediates (``"perturbations"``)."""

    __slots__ = ()


# -- collection-name registry --------------------------------------------------------------

_NAME_TO_TYPE: dict[str, type[Variable[Any]]] = {}
_TYPE_TO_NAME: dict[type[Variable[Any]], str] = {}
# type -> name of its nearest registered ancestor (None: none); reset on every registration.
_COLLECTION_CACHE: dict[type, str | None] = {}
_registry_version = 0


def registry_version() -> int:
    """Grows on every collection-name registration (string filters may then match differently)."""
    return _registry_version


def register_variable_name(name: str, typ: Any = MISSING, *, overwrite: bool = False) -> Any:
    """Registers ``typ`` as the Variable type of collection ``name`` (usable as a decorator).

    Examples:
        >>> from plait.core import Variable, register_variable_name, variable_type_from_name
        >>> @register_variable_name("my_stats")
        ... class MyStat(Variable):
        ...     pass
        >>> variable_type_from_name("my_stats") is MyStat
        True
    """
    if typ is MISSING:
        return lambda t: register_variable_name(name, t, overwrite=overwrite)
    if not (isinstance(typ, type) and issubclass(typ, Variable)):
        raise VariableError(
            f"register_variable_name({name!r}, {typ!r}): expected a Variable subclass, got "
            f"{typ!r}."
        )
    existing = _NAME_TO_TYPE.get(name)
    if existing is not None and existing is not typ and not overwrite:
        raise VariableError(
            f"Collection name {name!r} is already registered to {existing.__name__}; cannot "
            f"register {typ.__name__}. Fix: pick another name or pass overwrite=True."
        )
    if existing is not None:
        _TYPE_TO_NAME.pop(existing, None)
    _NAME_TO_TYPE[name] = typ
    _TYPE_TO_NAME[typ] = name
    _COLLECTION_CACHE.clear()
    global _registry_version
    _registry_version += 1
    return typ


def variable_type_from_name(
    name: str, /, *, base: type[Variable[Any]] = Variable, allow_register: bool = False
) -> type[Variable[Any]]:
    """The Variable type of a collection name; ``allow_register`` makes (and caches) one.

    Examples:
        >>> from plait.core import Param, variable_type_from_name
        >>> variable_type_from_name("params") is Param
        True
        >>> t = variable_type_from_name("counters", allow_register=True)
        >>> t.__name__, variable_type_from_name("counters") is t
        ('Counters', True)
    """
    typ = _NAME_TO_TYPE.get(name)
    if typ is not None:
        return typ
    if not allow_register:
        raise VariableError(
            f"No Variable type is registered for the collection name {name!r}. Registered: "
            f"{sorted(_NAME_TO_TYPE)}. Fix: pass allow_register=True to create one, or "
            "register your own type with register_variable_name()."
        )
    class_name = "".join(part.capitalize() for part in name.split("_") if part) or "Collection"
    if not class_name.isidentifier():
        class_name = "Collection"
    typ = type(class_name, (base,), {"__slots__": (), "__module__": __name__})
    typ.__qualname__ = class_name
    return register_variable_name(name, typ)


def variable_name_from_type(typ: type[Variable[Any]], /, *, allow_register: bool = False) -> str:
    """The collection name of a Variable type (``Param`` → ``"params"``).

    Examples:
        >>> from plait.core import BatchStat, variable_name_from_type
        >>> variable_name_from_type(BatchStat)
        'batch_stats'
    """
    name = _TYPE_TO_NAME.get(typ)
    if name is not None:
        return name
    if not allow_register:
        raise VariableError(
            f"Variable type {typ.__name__} has no registered collection name. Fix: pass "
            "allow_register=True (it registers the class name) or call "
            f"register_variable_name('name', {typ.__name__})."
        )
    register_variable_name(typ.__name__, typ)
    return typ.__name__


def collection_name_of(typ: type) -> str | None:
    """The collection name of ``typ`` or of its nearest registered ancestor (``None``: none)."""
    try:
        return _COLLECTION_CACHE[typ]
    except KeyError:
        pass
    name = None
    for klass in typ.__mro__:
        name = _TYPE_TO_NAME.get(klass)
        if name is not None:
            break
    _COLLECTION_CACHE[typ] = name
    return name


register_variable_name("params", Param)
register_variable_name("batch_stats", BatchStat)
register_variable_name("cache", Cache)
register_variable_name("intermediates", Intermediate)
register_variable_name("perturbations", Perturbation)
