"""Scope-level lifting: JAX transforms of functions that take a :class:`Scope`.

Every lifted transform follows one recipe:

1. **pack** the outer scope: group its variables by collection filters (one group per
   ``variable_axes`` entry, broadcast, carry...) and draw one key per RNG stream;
2. call the JAX transform on a **pure** function of (variable groups, keys, arguments) that
   builds an inner root scope at the same path, runs the scope function on it, and returns
   its output together with the inner scope's mutated collections;
3. **write back** the returned collections into the outer scope.

Boxed metadata (``Partitioned``) follows axes that vmap/scan add or remove
(``metadata_params``). Collections matched by no filter are invisible inside the transform.
Module-level transforms (``nn.vmap``, ``nn.scan`` ...) in :mod:`._transforms` are thin
layers over these functions.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import jax
import jax.numpy as jnp

from . import _meta as meta
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


def _check_structure(before: Any, after: Any, transform: str, what: str, path: str) -> None:
    if jax.tree_util.tree_structure(before) != jax.tree_util.tree_structure(after):
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

    def __hash__(self) -> int:
        return hash(self.key)

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
    kwargs: dict[str, Any] = {}
    if device is not None:
        kwargs["device"] = device
    if backend is not None:
        kwargs["backend"] = backend
    return jax.jit(
        _jit_body,
        static_argnums=(0, *(i + 3 for i in static_argnums)),
        static_argnames=static_argnames,
        donate_argnums=tuple(i + 3 for i in donate_argnums),
        **kwargs,
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
    """Lifted ``jax.jit`` of ``fn(scope, *args)``.

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
            hash(ctx)
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
    """Lifted ``jax.checkpoint`` (rematerialization) of ``fn(scope, *args)``."""
    static = tuple(i + 2 for i in _as_tuple(static_argnums))

    def wrapper(scope: Scope, *args: Any, **kwargs: Any) -> Any:
        (group,) = group_collections(scope.variables(), [variables])
        keys = draw_rngs(scope, rngs)

        def pure(group: dict[str, Any], keys: dict[str, Any], *args: Any) -> Any:
            inner = inner_scope(scope, group, keys, variables)
            y = fn(inner, *args, **kwargs)  # keyword arguments are constants of the remat
            return y, inner.mutable_variables()

        rematted = jax.checkpoint(
            pure, prevent_cse=prevent_cse, static_argnums=static, policy=policy
        )
        y, mutated = rematted(group, keys, *args)
        write_back(scope, mutated)
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
    """Lifted ``jax.vmap`` of ``fn(scope, *args)``.

    ``variable_axes`` maps collection filters to the axis of the stacked variables (``None``
    broadcasts them); ``split_rngs`` maps stream filters to whether each vmapped instance
    gets its own key.
    """
    in_filters, in_var_axes, out_filters, out_var_axes = _split_in_out(variable_axes)
    params = dict(metadata_params or {})

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

        # Keyword arguments are broadcast (closed over), e.g. ``train=True`` flags.
        def pure(groups: tuple, split_keys: dict, bcast_keys: dict, *args: Any):
            groups = tuple(
                meta.remove_axis(g, ax, params) if ax is not None else g
                for g, ax in zip(groups, in_var_axes, strict=True)
            )
            inner = inner_scope(
                scope, _merge(*groups), {**split_keys, **bcast_keys}, _union(out_filters)
            )
            y = fn(inner, *args, **kwargs)
            out_groups = group_collections(inner.mutable_variables(), out_filters)
            out_groups = tuple(
                meta.add_axis(g, ax, params) if ax is not None else g
                for g, ax in zip(out_groups, out_var_axes, strict=True)
            )
            return y, out_groups

        vmapped = jax.vmap(
            pure,
            in_axes=(tuple(in_var_axes), 0, None, *arg_axes),
            out_axes=(out_axes, tuple(out_var_axes)),
            axis_size=size,
            axis_name=axis_name,
            spmd_axis_name=spmd_axis_name,
        )
        y, out_groups = vmapped(tuple(groups), split_keys, bcast_keys, *args)
        write_back(scope, *out_groups)
        return y

    return wrapper


def _only_mutable(scope: Scope, group: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in group.items() if scope.is_mutable_collection(k)}
