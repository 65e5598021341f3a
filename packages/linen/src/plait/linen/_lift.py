"""Scope-level lifting: Linen's transforms of functions that take a :class:`Scope`.

Linen does not lift JAX transforms itself: every lifted transform is an adapter over
plait.core's lifting engine (``plait.core.vmap``, ``scan``, ``jit``, ``remat``, ``cond``...),
the same engine NNX's transforms use. One recipe:

1. **pack** the outer scope: group its variables by collection filters (one group per
   ``variable_axes`` entry, broadcast, carry...) and wrap each group in core Variables of
   the collection's type (:func:`to_variables`); boxed metadata (``Partitioned``) rides on
   the Variable as metadata with ``on_add_axis`` / ``on_remove_axis`` hooks. Draw one key
   per RNG stream;
2. call the core transform on a function of (Variable groups, keys, arguments) with one
   prefix entry per group (its axis, ``None`` to broadcast, ``Carry``...). Inside, an
   inner root scope at the same path is built from the lifted Variables' values and the
   scope function runs on it. Updated variables are stored into the lifted Variables (the
   engine writes them back with their group's axis); variables created inside (init) leave
   as new Variables in the output, where the engine stacks them along the group's out axis.
   The engine's ``transform_metadata`` step calls the hooks, so boxes gain or lose the
   mapped axis;
3. **write back** the Variables' values into the outer scope.

``jit`` is the exception to step 1: its collections enter ``plait.core.jit`` as plain
arrays (see :func:`_jitted`), and the mutated collections come back as its output.
``scan`` runs its first step outside the loop when it must create broadcast or carried
variables (see :mod:`._lift_scan`), and ``cond`` / ``switch`` run every branch once during
init, because the engine's loops and branches keep the structure of their inputs fixed.

Collections matched by no filter are invisible inside the transform. Module-level
transforms (``nn.vmap``, ``nn.scan`` ...) in :mod:`._transforms` are thin layers over these
functions.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
from plait import core

from . import _meta as meta
from ._collections import collection_type
from ._errors import LiftedVariableLayoutError
from ._filters import (
    CollectionFilter,
    PRNGSequenceFilter,
    group_collections,
    in_filter,
    intersect_filters,
    union_filters,
)
from ._scope import Scope, copy_structure

A = TypeVar("A")
ScopeFn = Callable[..., Any]


class _Broadcast:
    """Sentinel for ``nn.scan(in_axes=...)``: the argument is the same at every step."""

    def __repr__(self) -> str:
        return "broadcast"


broadcast = _Broadcast()


@dataclasses.dataclass(frozen=True)
class In[A]:
    """Axis used only on the way in (the collection is read-only inside)."""

    axis: A


@dataclasses.dataclass(frozen=True)
class Out[A]:
    """Axis used only on the way out (the collection starts empty inside)."""

    axis: A


def _split_in_out(
    axes: Mapping[CollectionFilter, Any],
) -> tuple[list[Any], list[Any], list[Any], list[Any]]:
    in_filters, in_axes, out_filters, out_axes = [], [], [], []
    for col_filter, axis in axes.items():
        if not isinstance(axis, Out):
            in_filters.append(col_filter)
            in_axes.append(axis.axis if isinstance(axis, In) else axis)
        if not isinstance(axis, In):
            out_filters.append(col_filter)
            out_axes.append(axis.axis if isinstance(axis, Out) else axis)
    return in_filters, in_axes, out_filters, out_axes


def _union(filters: Sequence[CollectionFilter]) -> CollectionFilter:
    result: CollectionFilter = False
    for f in filters:
        result = union_filters(result, f)
    return result


# --- scope variables as core Variables ------------------------------------------------------

# Metadata key holding a boxed leaf's box without its value (a one-level PyTreeDef).
_BOX = "linen_box"


def _is_variable(x: Any) -> bool:
    return isinstance(x, core.Variable)


def _split_box(box: Any) -> tuple[Any, Any]:
    """``(value, shell)`` of an AxisMetadata box; ``shell.unflatten([value])`` rebuilds it."""
    (value,), shell = jax.tree_util.tree_flatten(box, is_leaf=lambda x: x is not box)
    return value, shell


@dataclasses.dataclass(frozen=True, eq=False)
class _AxisHook:
    """Variable hook that moves a box's metadata with the axis the engine adds or removes.

    The engine hands hooks only the mesh axis name; Linen boxes take the whole
    ``metadata_params`` dict, which the hook carries. Equal hooks compare equal so that a
    Variable's metadata does not defeat the engine's trace cache.
    """

    add: bool
    params: tuple

    def __call__(self, var: Any, index: int, _axis_name: Any) -> None:
        box = var.get_metadata(_BOX).unflatten([var.get_raw_value()])
        params = dict(self.params)
        box = box.add_axis(index, params) if self.add else box.remove_axis(index, params)
        var.set_metadata(_BOX, _split_box(box)[1])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _AxisHook) and (self.add, self.params) == (other.add, other.params)

    def __hash__(self) -> int:
        try:
            return hash((self.add, self.params))
        except TypeError:
            return hash(self.add)


def _wrap_leaf(typ: type, leaf: Any, params: Mapping[Any, Any] | None) -> Any:
    if not meta.is_axis_metadata(leaf):
        return typ(leaf)
    value, shell = _split_box(leaf)
    if params is None:
        return typ(value, **{_BOX: shell})
    items = tuple(params.items())
    return typ(
        value,
        **{_BOX: shell, "on_add_axis": _AxisHook(True, items),
           "on_remove_axis": _AxisHook(False, items)},
    )


def _unwrap_leaf(var: Any) -> Any:
    shell = var.get_metadata(_BOX, None)
    value = var.get_raw_value()
    return value if shell is None else shell.unflatten([value])


def to_variables(
    group: Mapping[str, Any], params: Mapping[Any, Any] | None = None, typ: type | None = None
) -> dict:
    """``{collection: tree}`` with every leaf (box) wrapped in the collection's Variable type.

    ``params`` (``metadata_params``) is given for transforms that add or remove an axis:
    boxed leaves then get hooks that update the box when the engine moves the axis.
    ``typ`` overrides the type (core's vjp/jvp differentiate ``Param`` Variables).
    """
    out = {}
    for col, tree in group.items():
        col_typ = collection_type(col) if typ is None else typ
        out[col] = jax.tree_util.tree_map(
            lambda leaf, t=col_typ: _wrap_leaf(t, leaf, params), tree,
            is_leaf=meta.is_axis_metadata,
        )
    return out


def from_variables(group: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`to_variables`: the raw (boxed) values."""
    return {
        col: jax.tree_util.tree_map(_unwrap_leaf, tree, is_leaf=_is_variable)
        for col, tree in group.items()
    }


def store(
    lifted: Mapping[str, Any] | None,
    updated: Mapping[str, Any],
    params: Mapping[Any, Any] | None = None,
) -> dict[str, Any]:
    """Puts ``updated`` collections into the lifted Variables inside a core transform.

    A collection whose structure is unchanged is written into its input Variables (the
    engine writes them back along the group's axis); the others (created or grown inside)
    are returned as new Variables, to leave the transform as outputs.
    """
    created = {}
    for col, tree in updated.items():
        current = None if lifted is None else lifted.get(col)
        if current is not None:
            vars_, vars_def = jax.tree_util.tree_flatten(current, is_leaf=_is_variable)
            leaves, leaves_def = jax.tree_util.tree_flatten(tree, is_leaf=meta.is_axis_metadata)
            if vars_def == leaves_def and all(
                meta.is_axis_metadata(leaf) == (v.get_metadata(_BOX, None) is not None)
                for v, leaf in zip(vars_, leaves, strict=True)
            ):
                for v, leaf in zip(vars_, leaves, strict=True):
                    v.set_raw_value(_split_box(leaf)[0] if meta.is_axis_metadata(leaf) else leaf)
                continue
        created[col] = to_variables({col: tree}, params)[col]
    return created


def updated_collections(
    scope: Scope, lifted: Mapping[str, Any], created: Mapping[str, Any]
) -> dict[str, Any]:
    """After a core transform: the mutable lifted collections plus the created ones."""
    out = {col: tree for col, tree in from_variables(lifted).items()
           if scope.is_mutable_collection(col)}
    out.update(from_variables(created))
    return out


def metadata_for_engine(params: Mapping[Any, Any]) -> dict[Any, Any]:
    """``transform_metadata`` for core vmap/scan: the engine then runs the box hooks."""
    return {core.PARTITION_NAME: params.get(meta.PARTITION_NAME)}


# --- packing / unpacking -----------------------------------------------------------------


def draw_rngs(scope: Scope, rngs: PRNGSequenceFilter = True) -> dict[str, Any]:
    """One fresh key per RNG stream of ``scope`` matched by ``rngs`` (seeds an inner scope)."""
    return {name: scope.make_rng(name) for name in scope.rng_names() if in_filter(rngs, name)}


def inner_scope(
    outer: Scope, variables: Mapping[str, Any], rngs: Mapping[str, Any], mutable: CollectionFilter
) -> Scope:
    """A root scope at ``outer``'s path holding ``variables`` (mutable ones copied)."""
    mutable = intersect_filters(outer.mutable, mutable)
    owned = {
        col: copy_structure(tree) if in_filter(mutable, col) else tree
        for col, tree in variables.items()
    }
    return Scope(owned, dict(rngs), mutable, path=outer.path, flags=outer.flags)


def write_back(outer: Scope, *groups: Mapping[str, Any]) -> None:
    """Stores the collections returned from inside a transform into ``outer``."""
    for group in groups:
        for col, tree in group.items():
            if outer.is_mutable_collection(col):
                outer.set_subtree(col, tree)


def _merge(*groups: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for group in groups:
        out.update(group)
    return out


def _keep_existing(original: Any, updated: Any) -> Any:
    """``updated`` restricted to what is new: existing leaves keep their original value."""
    if isinstance(original, Mapping) and isinstance(updated, Mapping):
        out = dict(original)
        for key, value in updated.items():
            out[key] = _keep_existing(original[key], value) if key in original else value
        return out
    return original


def _moveaxis(tree: Any, src: int, dst: int) -> Any:
    if src == dst:
        return tree
    return jax.tree_util.tree_map(lambda x: jnp.moveaxis(x, src, dst), tree)


def raise_structure_error(before: Any, after: Any, transform: str, what: str, path: str) -> None:
    raise LiftedVariableLayoutError(
        f"{transform} in module {path!r}: the {what} variables changed structure inside "
        f"the loop body (before: {jax.tree_util.tree_structure(before)}, after: "
        f"{jax.tree_util.tree_structure(after)}).\n"
        "Fix: create these variables before the loop (run the body once when "
        "initializing), or make them mutable only during init()."
    )


# --- jit ---------------------------------------------------------------------------------


class _JitContext:
    """Hashable static part of a lifted-jit call (the jit cache key)."""

    def __init__(self, fn: ScopeFn, fn_key: Any, outer: Scope, variables: CollectionFilter):
        self.fn = fn
        self.path = outer.path
        self.mutable = outer.mutable
        self.variables = variables
        self.flags = tuple(sorted(outer.flags.items()))
        self.key = (fn_key, self.path, _hashable(self.mutable), _hashable(variables), self.flags)
        # Hashed once here (raises TypeError for an unhashable configuration): core.jit
        # hashes its static arguments more than once per call.
        self._hash = hash(self.key)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _JitContext) and self.key == other.key


def _hashable(x: Any) -> Any:
    if isinstance(x, (set, frozenset, list, tuple)):
        return tuple(sorted(map(repr, x)))
    return x


def _jit_body(
    ctx: _JitContext, variables: dict[str, Any], rngs: dict[str, Any], *args: Any, **kwargs: Any
) -> tuple[Any, dict[str, Any]]:
    outer_stub = Scope({}, {}, ctx.mutable, path=ctx.path, flags=dict(ctx.flags))
    scope = inner_scope(outer_stub, variables, rngs, ctx.variables)
    y = ctx.fn(scope, *args, **kwargs)
    return y, scope.mutable_variables()


@functools.lru_cache(maxsize=256)
def _jitted(
    static_argnums: tuple[int, ...],
    static_argnames: tuple[str, ...],
    donate_argnums: tuple[int, ...],
    device: Any,
    backend: Any,
) -> Callable[..., Any]:
    # One core-jitted body per configuration. The collections go in as plain arrays, not
    # Variables: core.jit keys its call plans by the identity of the Variables passed, and
    # Variables made afresh on every call would miss that cache and pile up plans.
    return core.jit(
        _jit_body,
        static_argnums=(0, *(i + 3 for i in static_argnums)),
        static_argnames=static_argnames,
        donate_argnums=tuple(i + 3 for i in donate_argnums),
        device=device,
        backend=backend,
    )


def _as_tuple(x: Any) -> tuple:
    if x is None:
        return ()
    if isinstance(x, (int, str)):
        return (x,)
    return tuple(x)


def jit(
    fn: ScopeFn,
    variables: CollectionFilter = True,
    rngs: PRNGSequenceFilter = True,
    static_argnums: int | Sequence[int] = (),
    static_argnames: str | Sequence[str] = (),
    donate_argnums: int | Sequence[int] = (),
    device: Any = None,
    backend: str | None = None,
    fn_key: Any = None,
) -> ScopeFn:
    """Lifted ``jax.jit`` of ``fn(scope, *args)`` (core's ``jit``).

    ``fn_key`` identifies ``fn`` for jax's trace cache (defaults to ``fn`` itself): calls
    with an equal key, the same path, mutability and static arguments reuse the compiled
    function.
    """
    jitted = _jitted(
        _as_tuple(static_argnums),
        _as_tuple(static_argnames),
        _as_tuple(donate_argnums),
        device,
        backend,
    )

    def wrapper(scope: Scope, *args: Any, **kwargs: Any) -> Any:
        (group,) = group_collections(scope.variables(), [variables])
        keys = draw_rngs(scope, rngs)
        key = fn if fn_key is None else fn_key
        try:
            ctx = _JitContext(fn, key, scope, variables)
        except TypeError:  # unhashable configuration: trace every call
            ctx = _JitContext(fn, object(), scope, variables)
        y, mutated = jitted(ctx, group, keys, *args, **kwargs)
        write_back(scope, mutated)
        return y

    return wrapper


# --- checkpoint ----------------------------------------------------------------------------


def checkpoint(
    fn: ScopeFn,
    variables: CollectionFilter = True,
    rngs: PRNGSequenceFilter = True,
    concrete: bool = False,
    prevent_cse: bool = True,
    static_argnums: int | tuple[int, ...] = (),
    policy: Callable[..., bool] | None = None,
) -> ScopeFn:
    """Lifted ``jax.checkpoint`` (rematerialization) of ``fn(scope, *args)`` (core's
    ``remat``)."""
    static = tuple(i + 2 for i in _as_tuple(static_argnums))

    def wrapper(scope: Scope, *args: Any, **kwargs: Any) -> Any:
        (group,) = group_collections(scope.variables(), [variables])
        keys = draw_rngs(scope, rngs)

        def pure(group: dict[str, Any], keys: dict[str, Any], *args: Any) -> Any:
            inner = inner_scope(scope, from_variables(group), keys, variables)
            y = fn(inner, *args, **kwargs)  # keyword arguments are constants of the remat
            return y, store(group, inner.mutable_variables())

        rematted = core.remat(
            pure, prevent_cse=prevent_cse, static_argnums=static, policy=policy
        )
        lifted = to_variables(group)
        y, created = rematted(lifted, keys, *args)
        write_back(scope, updated_collections(scope, lifted, created))
        return y

    return wrapper


remat = checkpoint


# --- vmap ----------------------------------------------------------------------------------


def _rng_split_flags(
    names: Sequence[str], split_rngs: Mapping[PRNGSequenceFilter, bool]
) -> dict[str, bool]:
    """For each stream: True (split along the axis) or False (same key everywhere).
    Streams matched by no filter are broadcast."""
    flags = {}
    for name in names:
        flags[name] = False
        for rng_filter, split in split_rngs.items():
            if in_filter(rng_filter, name):
                flags[name] = bool(split)
                break
    return flags


def _axis_size_from_args(args: tuple, in_axes: Any) -> int | None:
    sizes: list[int] = []

    def visit(axis: Any, sub: Any) -> None:
        if axis is None or isinstance(axis, _Broadcast):
            return
        for leaf in jax.tree_util.tree_leaves(sub):
            if hasattr(leaf, "shape") and leaf.ndim > 0:
                sizes.append(leaf.shape[axis])

    if isinstance(in_axes, (int, type(None))):
        for a in args:
            visit(in_axes, a)
    else:
        jax.tree_util.tree_map(visit, tuple(in_axes), tuple(args), is_leaf=lambda x: x is None)
    return sizes[0] if sizes else None


def vmap(
    fn: ScopeFn,
    variable_axes: Mapping[CollectionFilter, Any],
    split_rngs: Mapping[PRNGSequenceFilter, bool],
    in_axes: Any = 0,
    out_axes: Any = 0,
    axis_size: int | None = None,
    axis_name: str | None = None,
    spmd_axis_name: Any = None,
    metadata_params: Mapping[Any, Any] | None = None,
) -> ScopeFn:
    """Lifted ``jax.vmap`` of ``fn(scope, *args)`` (core's ``vmap``).

    ``variable_axes`` maps collection filters to the axis of the stacked variables (``None``
    broadcasts them); ``split_rngs`` maps stream filters to whether each vmapped instance
    gets its own key.
    """
    in_filters, in_var_axes, out_filters, out_var_axes = _split_in_out(variable_axes)
    params = dict(metadata_params or {})
    # Output group j writes into input group i when the entry is a plain axis (same axis on
    # both sides); In/Out entries change the axis, so their collections leave as outputs.
    plain = [f for f, ax in variable_axes.items() if not isinstance(ax, (In, Out))]
    in_of_out = [in_filters.index(f) if f in plain else None for f in out_filters]

    def wrapper(scope: Scope, *args: Any, **kwargs: Any) -> Any:
        groups = group_collections(scope.variables(), in_filters)
        names = scope.rng_names()
        split_flags = _rng_split_flags(names, split_rngs)
        size = axis_size if axis_size is not None else _axis_size_from_args(args, in_axes)
        split_keys, bcast_keys = {}, {}
        for name in names:
            key = scope.make_rng(name)
            if split_flags[name]:
                if size is None:
                    raise LiftedVariableLayoutError(
                        f"nn.vmap in module {scope.path_text!r} must split RNG stream "
                        f"{name!r} but cannot tell the axis size (no mapped argument).\n"
                        "Fix: pass axis_size=..."
                    )
                split_keys[name] = jax.random.split(key, size)
            else:
                bcast_keys[name] = key
        arg_axes = (
            (in_axes,) * len(args) if isinstance(in_axes, (int, type(None))) else tuple(in_axes)
        )
        lifted = tuple(to_variables(g, params) for g in groups)

        # Keyword arguments are broadcast (closed over), e.g. ``train=True`` flags.
        def pure(groups: tuple, split_keys: dict, bcast_keys: dict, *args: Any):
            inner = inner_scope(
                scope,
                _merge(*(from_variables(g) for g in groups)),
                {**split_keys, **bcast_keys},
                _union(out_filters),
            )
            y = fn(inner, *args, **kwargs)
            out_groups = group_collections(inner.mutable_variables(), out_filters)
            created = tuple(
                store(None if i is None else groups[i], g, params)
                for g, i in zip(out_groups, in_of_out, strict=True)
            )
            return y, created

        vmapped = core.vmap(
            pure,
            in_axes=(tuple(in_var_axes), 0, None, *arg_axes),
            out_axes=(out_axes, tuple(out_var_axes)),
            axis_size=size,
            axis_name=axis_name,
            spmd_axis_name=spmd_axis_name,
            transform_metadata=metadata_for_engine(params),
        )
        y, created = vmapped(lifted, split_keys, bcast_keys, *args)
        for j, (g, i) in enumerate(zip(created, in_of_out, strict=True)):
            kept = {} if i is None else {
                c: t for c, t in lifted[i].items() if in_filter(out_filters[j], c)
            }
            write_back(scope, updated_collections(scope, kept, g))
        return y

    return wrapper


def _only_mutable(scope: Scope, group: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in group.items() if scope.is_mutable_collection(k)}
