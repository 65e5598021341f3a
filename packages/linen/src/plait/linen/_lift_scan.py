"""Lifted ``lax.scan`` over scopes (``nn.scan``, ``nn.remat_scan``); see :mod:`._lift`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from . import _meta as meta
from ._errors import LiftedVariableLayoutError
from ._filters import (
    CollectionFilter,
    PRNGSequenceFilter,
    group_collections,
    intersect_filters,
    is_filter_empty,
    union_filters,
)
from ._lift import (
    ScopeFn,
    _Broadcast,
    _check_structure,
    _keep_existing,
    _merge,
    _moveaxis,
    _only_mutable,
    _rng_split_flags,
    _union,
    checkpoint,
    inner_scope,
    write_back,
)
from ._scope import Scope

# --- scan ----------------------------------------------------------------------------------


def _normalize_scan_axes(in_axes: Any, n_args: int) -> tuple:
    if isinstance(in_axes, (int, _Broadcast)):
        return (in_axes,) * n_args
    axes = tuple(in_axes)
    if len(axes) != n_args:
        raise LiftedVariableLayoutError(
            f"nn.scan got in_axes={in_axes!r} for {n_args} scanned argument(s).\n"
            "Fix: give one axis (or nn.broadcast) per argument after the carry."
        )
    return axes


def scan(
    fn: ScopeFn,
    variable_axes: Mapping[CollectionFilter, Any] | None = None,
    variable_broadcast: CollectionFilter = False,
    variable_carry: CollectionFilter = False,
    split_rngs: Mapping[PRNGSequenceFilter, bool] | None = None,
    in_axes: Any = 0,
    out_axes: Any = 0,
    length: int | None = None,
    reverse: bool = False,
    unroll: int = 1,
    data_transform: Callable[..., Any] | None = None,
    metadata_params: Mapping[Any, Any] | None = None,
) -> ScopeFn:
    """Lifted ``lax.scan`` of ``fn(scope, carry, *xs) -> (carry, ys)``.

    Variables in ``variable_axes`` collections are stacked (one slice per step),
    ``variable_broadcast`` ones are shared by all steps (read-only inside the loop),
    ``variable_carry`` ones are threaded through the steps like the carry.

    When a broadcast or carry collection is mutable (e.g. params during init), the first
    step runs outside the loop so that it can create those variables; the remaining steps
    then run in ``lax.scan`` with a fixed variable structure.
    """
    variable_axes = dict(variable_axes or {})
    split_rngs = dict(split_rngs or {})
    axes_filters = list(variable_axes)
    var_axes = [variable_axes[f] for f in axes_filters]
    params = dict(metadata_params or {})
    all_filters = [*axes_filters, variable_broadcast, variable_carry]

    def wrapper(scope: Scope, init_carry: Any, *args: Any, **kwargs: Any) -> Any:
        groups = group_collections(scope.variables(), all_filters)
        axes_groups = list(groups[: len(axes_filters)])
        bcast_group, carry_group = groups[-2], groups[-1]
        arg_axes = _normalize_scan_axes(in_axes, len(args))
        scanned = [
            _moveaxis(a, ax, 0)
            for a, ax in zip(args, arg_axes, strict=True)
            if not isinstance(ax, _Broadcast)
        ]
        n = length
        if n is None:
            leaves = [leaf for a in scanned for leaf in jax.tree_util.tree_leaves(a)]
            if not leaves:
                raise LiftedVariableLayoutError(
                    f"nn.scan in module {scope.path_text!r} cannot infer the number of steps "
                    "(no scanned argument).\nFix: pass length=..."
                )
            n = leaves[0].shape[0]
        axes_groups = [_moveaxis(g, ax, 0) for g, ax in zip(axes_groups, var_axes, strict=True)]
        names = scope.rng_names()
        split_flags = _rng_split_flags(names, split_rngs)
        split_keys = {k: jax.random.split(scope.make_rng(k), n) for k in names if split_flags[k]}
        bcast_keys = {k: scope.make_rng(k) for k in names if not split_flags[k]}

        def step(
            carry_vars: dict,
            carry: Any,
            bcast_vars: dict,
            axes_slices: Sequence[dict],
            keys: dict,
            xs: Sequence[Any],
            mutable: CollectionFilter,
        ) -> tuple:
            slices = [
                meta.remove_axis(g, ax, params) for g, ax in zip(axes_slices, var_axes, strict=True)
            ]
            variables = _merge(*slices, bcast_vars, carry_vars)
            rngs = {**keys, **bcast_keys}
            if data_transform is not None:
                variables, rngs = data_transform(variables, rngs)
            inner = inner_scope(scope, variables, rngs, mutable)
            it = iter(xs)
            call_args = [
                a if isinstance(ax, _Broadcast) else next(it)
                for a, ax in zip(args, arg_axes, strict=True)
            ]
            carry, ys = fn(inner, carry, *call_args, **kwargs)  # keyword args: broadcast
            new = inner.mutable_variables()
            out_slices = group_collections(new, axes_filters)
            (new_bcast,) = group_collections(new, [variable_broadcast])
            (new_carry,) = group_collections(new, [variable_carry])
            return new_carry, carry, new_bcast, out_slices, ys

        loop_mutable = _union([*axes_filters, variable_carry])
        needs_first_step = not is_filter_empty(
            intersect_filters(scope.mutable, union_filters(variable_broadcast, variable_carry))
        )
        ys_first = None
        first_slices: tuple = ()
        carry = init_carry
        first = n - 1 if reverse else 0
        if needs_first_step:

            def take(tree: Any) -> Any:
                return jax.tree_util.tree_map(lambda x: x[first], tree)

            new_carry, carry, new_bcast, first_slices, ys_first = step(
                carry_group,
                carry,
                bcast_group,
                [take(g) for g in axes_groups],
                {k: v[first] for k, v in split_keys.items()},
                [take(a) for a in scanned],
                union_filters(loop_mutable, variable_broadcast),
            )
            bcast_group = _keep_existing(bcast_group, new_bcast)
            carry_group = new_carry if new_carry else carry_group
            rest = slice(0, n - 1) if reverse else slice(1, n)

            def drop(tree: Any) -> Any:
                return jax.tree_util.tree_map(lambda x: x[rest], tree)

            axes_groups = [drop(g) for g in axes_groups]
            scanned = [drop(a) for a in scanned]
            split_keys = {k: v[rest] for k, v in split_keys.items()}
            steps = n - 1
        else:
            steps = n

        def body(loop_carry: tuple, x: tuple) -> tuple:
            carry_vars, carry = loop_carry
            axes_slices, keys, xs = x
            new_carry, carry, _, out_slices, ys = step(
                carry_vars, carry, bcast_group, axes_slices, keys, xs, loop_mutable
            )
            _check_structure(carry_vars, new_carry, "nn.scan", "carry", scope.path_text)
            return (new_carry if new_carry else carry_vars, carry), (out_slices, ys)

        if steps > 0:
            (carry_group, carry), (out_stacked, ys) = lax.scan(
                body,
                (carry_group, carry),
                (list(axes_groups), split_keys, list(scanned)),
                length=steps,
                reverse=reverse,
                unroll=unroll,
            )
            if needs_first_step:
                out_stacked = _join_first(first_slices, out_stacked, reverse)
                ys = _join_first(ys_first, ys, reverse)
        else:
            out_stacked = jax.tree_util.tree_map(lambda x: x[None], first_slices)
            ys = jax.tree_util.tree_map(lambda x: x[None], ys_first)
        out_stacked = [
            _moveaxis(_restore_box_axis(g, ax, params), 0, ax)
            for g, ax in zip(out_stacked, var_axes, strict=True)
        ]
        ys = _moveaxis_out(ys, out_axes)
        write_back(scope, *out_stacked, carry_group)
        if needs_first_step:
            write_back(scope, _only_mutable(scope, bcast_group))
        return carry, ys

    return wrapper


def _restore_box_axis(tree: Any, axis: int, params: dict[Any, Any]) -> Any:
    return meta.add_axis(tree, axis, params)


def _join_first(first: Any, rest: Any, reverse: bool) -> Any:
    def join(a: Any, b: Any) -> Any:
        a = jnp.expand_dims(a, 0)
        return jnp.concatenate([b, a] if reverse else [a, b], axis=0)

    return jax.tree_util.tree_map(join, first, rest)


def _moveaxis_out(ys: Any, out_axes: Any) -> Any:
    if isinstance(out_axes, int):
        return _moveaxis(ys, 0, out_axes)
    return jax.tree_util.tree_map(lambda ax, y: _moveaxis(y, 0, ax), out_axes, ys)


def remat_scan(
    body_fn: ScopeFn,
    lengths: Sequence[int],
    policy: Callable[..., bool] | None = None,
    variable_broadcast: CollectionFilter = False,
    variable_carry: CollectionFilter = False,
    variable_axes: Mapping[CollectionFilter, Any] | None = None,
    split_rngs: Mapping[PRNGSequenceFilter, bool] | None = None,
) -> ScopeFn:
    """Nested scans of rematerialized steps: ``body_fn(scope, carry) -> carry`` runs
    ``prod(lengths)`` times; stacked variables get one leading axis per nesting level."""
    variable_axes = {True: 0} if variable_axes is None else dict(variable_axes)
    split_rngs = {True: True} if split_rngs is None else dict(split_rngs)
    lengths = tuple(lengths)
    if not lengths:
        raise LiftedVariableLayoutError("remat_scan needs at least one length.")

    def body(scope: Scope, carry: Any) -> tuple:
        return body_fn(scope, carry), None

    inner: ScopeFn = checkpoint(body, policy=policy)
    for length in reversed(lengths):
        scanned = scan(
            inner,
            variable_axes=variable_axes,
            variable_broadcast=variable_broadcast,
            variable_carry=variable_carry,
            split_rngs=split_rngs,
            length=length,
        )
        inner = checkpoint(_ys_none(scanned), policy=policy)

    def wrapper(scope: Scope, carry: Any) -> Any:
        carry, _ = inner(scope, carry)
        return carry

    return wrapper


def _ys_none(scanned: ScopeFn) -> ScopeFn:
    def run(scope: Scope, carry: Any) -> tuple:
        carry, _ = scanned(scope, carry)
        return carry, None

    return run
