"""Lifted scans over scopes (``nn.scan``, ``nn.remat_scan``) on core's ``scan``; see
:mod:`._lift`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from plait import core

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
    raise_structure_error,
    _keep_existing,
    _merge,
    _moveaxis,
    _only_mutable,
    _rng_split_flags,
    _split_box,
    _union,
    checkpoint,
    from_variables,
    inner_scope,
    metadata_for_engine,
    store,
    to_variables,
    updated_collections,
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
    """Lifted ``lax.scan`` of ``fn(scope, carry, *xs) -> (carry, ys)``, run by core's ``scan``.

    Variables in ``variable_axes`` collections are stacked (one slice per step),
    ``variable_broadcast`` ones are shared by all steps (read-only inside the loop),
    ``variable_carry`` ones are threaded through the steps like the carry (the engine's
    ``Carry``).

    The engine's loop keeps the structure of its inputs fixed, so when a broadcast or carry
    collection is mutable (e.g. params during init) the first step runs outside the loop to
    create those variables; the remaining steps then run in the engine's scan.
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
        n = length
        if n is None:
            sizes = [
                leaf.shape[ax]
                for a, ax in zip(args, arg_axes, strict=True)
                if not isinstance(ax, _Broadcast)
                for leaf in jax.tree_util.tree_leaves(a)
            ]
            if not sizes:
                raise LiftedVariableLayoutError(
                    f"nn.scan in module {scope.path_text!r} cannot infer the number of steps "
                    "(no scanned argument).\nFix: pass length=..."
                )
            n = sizes[0]
        names = scope.rng_names()
        split_flags = _rng_split_flags(names, split_rngs)
        split_keys = {k: jax.random.split(scope.make_rng(k), n) for k in names if split_flags[k]}
        bcast_keys = {k: scope.make_rng(k) for k in names if not split_flags[k]}

        def step(
            variables: dict, keys: dict, carry: Any, call_args: Sequence[Any],
            mutable: CollectionFilter,
        ) -> tuple[Any, Any, dict]:
            rngs = {**keys, **bcast_keys}
            if data_transform is not None:
                variables, rngs = data_transform(variables, rngs)
            inner = inner_scope(scope, variables, rngs, mutable)
            carry, ys = fn(inner, carry, *call_args, **kwargs)  # keyword args: broadcast
            return carry, ys, inner.mutable_variables()

        loop_mutable = _union([*axes_filters, variable_carry])
        needs_first_step = not is_filter_empty(
            intersect_filters(scope.mutable, union_filters(variable_broadcast, variable_carry))
        )
        ys_first = None
        first_slices: tuple = ()
        carry = init_carry
        first = n - 1 if reverse else 0
        steps = n
        if needs_first_step:

            def take(tree: Any, axis: int) -> Any:
                return jax.tree_util.tree_map(lambda x: jnp.take(x, first, axis), tree)

            slices = [
                meta.remove_axis(take(g, ax), ax, params)
                for g, ax in zip(axes_groups, var_axes, strict=True)
            ]
            carry, ys_first, new = step(
                _merge(*slices, bcast_group, carry_group),
                {k: v[first] for k, v in split_keys.items()},
                carry,
                [a if isinstance(ax, _Broadcast) else take(a, ax)
                 for a, ax in zip(args, arg_axes, strict=True)],
                union_filters(loop_mutable, variable_broadcast),
            )
            first_slices = group_collections(new, axes_filters)
            (new_bcast,) = group_collections(new, [variable_broadcast])
            (new_carry,) = group_collections(new, [variable_carry])
            bcast_group = _keep_existing(bcast_group, new_bcast)
            carry_group = new_carry if new_carry else carry_group
            steps = n - 1
            rest = jnp.arange(0, n - 1) if reverse else jnp.arange(1, n)

            def drop(tree: Any, axis: int) -> Any:
                return jax.tree_util.tree_map(lambda x: jnp.take(x, rest, axis), tree)

            axes_groups = [drop(g, ax) for g, ax in zip(axes_groups, var_axes, strict=True)]
            args = tuple(
                a if isinstance(ax, _Broadcast) else drop(a, ax)
                for a, ax in zip(args, arg_axes, strict=True)
            )
            split_keys = {k: v[rest] for k, v in split_keys.items()}

        if steps == 0:
            out_stacked = [
                _moveaxis(meta.add_axis(jax.tree_util.tree_map(lambda x: x[None], g), ax, params),
                          0, ax)
                for g, ax in zip(first_slices, var_axes, strict=True)
            ]
            ys = _moveaxis_out(jax.tree_util.tree_map(lambda x: x[None], ys_first), out_axes)
        else:
            lifted_axes = tuple(to_variables(g, params) for g in axes_groups)
            lifted_carry = to_variables(carry_group)
            lifted_bcast = to_variables(bcast_group)

            def body(loop_carry: tuple, axes_vars: tuple, bcast_vars: dict, keys: dict,
                     *call_args: Any) -> tuple:
                carry_vars, carry = loop_carry
                variables = _merge(
                    *(from_variables(g) for g in axes_vars),
                    from_variables(bcast_vars),
                    from_variables(carry_vars),
                )
                carry, ys, new = step(variables, keys, carry, call_args, loop_mutable)
                (new_carry,) = group_collections(new, [variable_carry])
                if store(carry_vars, new_carry):  # a carry variable was created or reshaped
                    raise_structure_error(from_variables(carry_vars), new_carry, "nn.scan",
                                          "carry", scope.path_text)
                created = tuple(
                    store(g, out, params)
                    for g, out in zip(axes_vars, group_collections(new, axes_filters),
                                      strict=True)
                )
                return (carry_vars, carry), ys, created

            scanned = core.scan(
                body,
                in_axes=(
                    core.Carry, tuple(var_axes), None, 0,
                    *(None if isinstance(ax, _Broadcast) else ax for ax in arg_axes),
                ),
                out_axes=(core.Carry, 0 if needs_first_step else out_axes, tuple(var_axes)),
                length=steps,
                reverse=reverse,
                unroll=unroll,
                transform_metadata=metadata_for_engine(params),
            )
            (_, carry), ys, created = scanned(
                (lifted_carry, carry), lifted_axes, lifted_bcast, split_keys, *args
            )
            carry_group = from_variables(lifted_carry)
            out_stacked = [
                updated_collections(scope, g, c) for g, c in zip(lifted_axes, created, strict=True)
            ]
            if needs_first_step:
                out_stacked = [
                    _join_first(f, g, ax, reverse)
                    for f, g, ax in zip(first_slices, out_stacked, var_axes, strict=True)
                ]
                ys = _moveaxis_out(_join_first(ys_first, ys, 0, reverse), out_axes)
        write_back(scope, *out_stacked, _only_mutable(scope, carry_group))
        if needs_first_step:
            write_back(scope, _only_mutable(scope, bcast_group))
        return carry, ys

    return wrapper


def _join_first(first: Any, rest: Any, axis: int, reverse: bool) -> Any:
    """Stacks the first step's slices onto the loop's (boxes come from the loop's output,
    which has the stacked axis)."""

    def join(b: Any, a: Any) -> Any:
        if meta.is_axis_metadata(b):
            value, shell = _split_box(b)
            return shell.unflatten([join(value, _split_box(a)[0])])
        a = jnp.expand_dims(a, axis)
        return jnp.concatenate([b, a] if reverse else [a, b], axis=axis)

    return jax.tree_util.tree_map(join, rest, first, is_leaf=meta.is_axis_metadata)


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
