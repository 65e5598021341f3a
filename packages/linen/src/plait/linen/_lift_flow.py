"""Lifted control flow, autodiff and variable mapping over scopes; see :mod:`._lift`.

``switch`` / ``cond``, ``while_loop``, ``vjp``, ``jvp``, ``value_and_grad`` and ``custom_vjp``
run on plait.core's transforms of the same names. ``map_variables``, ``add_metadata_axis``
and ``fold_rngs`` involve no JAX transform and work on the scope directly.
"""

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
)
from ._lift import (
    ScopeFn,
    _keep_existing,
    _merge,
    _only_mutable,
    _rng_split_flags,
    draw_rngs,
    from_variables,
    inner_scope,
    raise_structure_error,
    store,
    to_variables,
    updated_collections,
    write_back,
)
from ._scope import Scope

# --- control flow --------------------------------------------------------------------------


def _precreate(
    scope: Scope,
    fns: Sequence[ScopeFn],
    variables: CollectionFilter,
    rngs: PRNGSequenceFilter,
    operands: tuple,
) -> None:
    """During init, runs every branch once so that all create their variables; only newly
    created variables are kept (existing ones keep their values)."""
    for fn in fns:
        (group,) = group_collections(scope.variables(), [variables])
        inner = inner_scope(scope, group, draw_rngs(scope, rngs), variables)
        fn(inner, *operands)
        created = {
            col: _keep_existing(group.get(col, {}), tree)
            for col, tree in inner.mutable_variables().items()
        }
        write_back(scope, created)


def switch(
    index: Any,
    branches: Sequence[ScopeFn],
    scope: Scope,
    *operands: Any,
    variables: CollectionFilter = True,
    rngs: PRNGSequenceFilter = True,
) -> Any:
    """Lifted ``lax.switch`` (core's ``switch``): runs ``branches[index](scope, *operands)``."""
    if scope.get_flag("initializing", False):
        _precreate(scope, branches, variables, rngs, operands)
    (group,) = group_collections(scope.variables(), [variables])
    keys = draw_rngs(scope, rngs)

    def make_branch(fn: ScopeFn) -> Callable[..., Any]:
        def branch(group: dict, keys: dict, *operands: Any) -> tuple:
            inner = inner_scope(scope, from_variables(group), keys, variables)
            y = fn(inner, *operands)
            return y, store(group, inner.mutable_variables())

        return branch

    lifted = to_variables(group)
    try:
        y, created = core.switch(
            index, [make_branch(b) for b in branches], lifted, keys, *operands
        )
    except (TypeError, core.PlaitCoreError) as e:  # core: branch results differ
        raise LiftedVariableLayoutError(
            f"nn.cond/nn.switch in module {scope.path_text!r}: the branches returned different "
            f"output or variable structures ({e}).\nFix: make every branch create the same "
            "variables and return outputs of the same shape and dtype."
        ) from e
    write_back(scope, updated_collections(scope, lifted, created))
    return y


def cond(
    pred: Any,
    true_fun: ScopeFn,
    false_fun: ScopeFn,
    scope: Scope,
    *operands: Any,
    variables: CollectionFilter = True,
    rngs: PRNGSequenceFilter = True,
) -> Any:
    """Lifted ``lax.cond``: ``true_fun(scope, *operands)`` if ``pred`` else ``false_fun``."""
    index = jnp.asarray(pred).astype(jnp.int32)
    return switch(
        1 - index, [true_fun, false_fun], scope, *operands, variables=variables, rngs=rngs
    )


def while_loop(
    cond_fn: Callable[[Scope, Any], Any],
    body_fn: Callable[[Scope, Any], Any],
    scope: Scope,
    init: Any,
    carry_variables: CollectionFilter = False,
    broadcast_variables: CollectionFilter = True,
    split_rngs: Mapping[PRNGSequenceFilter, bool] | None = None,
) -> Any:
    """Lifted ``lax.while_loop`` (core's ``while_loop``).

    ``carry_variables`` collections are updated by the body, ``broadcast_variables`` are
    read-only. Streams with ``split_rngs`` get a new key per iteration.
    """
    carry_group, bcast_group = group_collections(
        scope.variables(), [carry_variables, broadcast_variables]
    )
    names = scope.rng_names()
    split_flags = _rng_split_flags(names, dict(split_rngs or {}))
    keys = {name: scope.make_rng(name) for name in names}

    def iteration_rngs(i: Any) -> dict:
        return {k: jax.random.fold_in(v, i) if split_flags[k] else v for k, v in keys.items()}

    # The carried collections are the engine's loop state (Variables updated in place);
    # broadcast ones are constants of the loop.
    def cond_wrapper(state: tuple) -> Any:
        carry_vars, carry, i = state
        inner = inner_scope(
            scope, _merge(bcast_group, from_variables(carry_vars)), iteration_rngs(i), False
        )
        return cond_fn(inner, carry)

    def body_wrapper(state: tuple) -> tuple:
        carry_vars, carry, i = state
        inner = inner_scope(
            scope, _merge(bcast_group, from_variables(carry_vars)), iteration_rngs(i),
            carry_variables,
        )
        carry = body_fn(inner, carry)
        (new_vars,) = group_collections(inner.mutable_variables(), [carry_variables])
        if store(carry_vars, new_vars):  # a carry variable was created or reshaped
            raise_structure_error(from_variables(carry_vars), new_vars, "nn.while_loop",
                                  "carry", scope.path_text)
        return carry_vars, carry, i + 1

    lifted = to_variables(carry_group)
    _, carry, _ = core.while_loop(
        cond_wrapper, body_wrapper, (lifted, init, jnp.zeros((), jnp.int32))
    )
    write_back(scope, _only_mutable(scope, from_variables(lifted)))
    return carry


# --- autodiff ------------------------------------------------------------------------------


def vjp(
    fn: ScopeFn,
    scope: Scope,
    *primals: Any,
    has_aux: bool = False,
    reduce_axes: Any = (),
    vjp_variables: CollectionFilter = "params",
    variables: CollectionFilter = True,
    rngs: PRNGSequenceFilter = True,
) -> tuple:
    """Lifted ``jax.vjp``; the returned function gives ``(variable_grads, *primal_grads)``
    where ``variable_grads`` holds the ``vjp_variables`` collections."""
    if reduce_axes:
        raise NotImplementedError("reduce_axes is not supported (removed from JAX).")
    diff_group, other_group = group_collections(
        scope.variables(), [intersect_filters(vjp_variables, variables), variables]
    )
    keys = draw_rngs(scope, rngs)
    # core.vjp differentiates the Param Variables of its primals: the differentiated
    # collections go in as Params whatever their collection, the others are constants.
    lifted = to_variables(diff_group, typ=core.Param)

    def pure(diff: dict, *primals: Any) -> tuple:
        inner = inner_scope(scope, _merge(from_variables(diff), other_group), keys, variables)
        out = fn(inner, *primals)
        y, aux = out if has_aux else (out, None)
        return y, (aux, _store_split(diff, inner.mutable_variables()))

    y, core_vjp_fn, (aux, created) = core.vjp(pure, lifted, *primals, has_aux=True)
    write_back(scope, updated_collections(scope, lifted, created))

    vjp_fn = jax.tree_util.Partial(_variable_cotangents, core_vjp_fn)  # a pytree, as jax's
    return (y, vjp_fn, aux) if has_aux else (y, vjp_fn)


def _variable_cotangents(core_vjp_fn: Any, cotangent: Any) -> tuple:
    var_grads, *primal_grads = core_vjp_fn(cotangent)
    return (from_variables(var_grads), *primal_grads)


def _store_split(diff: Mapping[str, Any], mutated: Mapping[str, Any]) -> dict[str, Any]:
    """Stores ``mutated`` into the lifted ``diff`` collections; the other collections leave
    as new Variables (of their collection's type, so they are not differentiated)."""
    created = store(diff, {c: t for c, t in mutated.items() if c in diff})
    created.update(to_variables({c: t for c, t in mutated.items() if c not in diff}))
    return created


def jvp(
    fn: ScopeFn,
    scope: Scope,
    primals: Sequence[Any],
    tangents: Sequence[Any],
    variable_tangents: Mapping[str, Any],
    variables: CollectionFilter = True,
    rngs: PRNGSequenceFilter = True,
) -> tuple[Any, Any]:
    """Lifted ``jax.jvp``; ``variable_tangents`` gives tangents for whole collections."""
    tangent_cols = list(variable_tangents)
    diff_group, other_group = group_collections(
        scope.variables(), [intersect_filters(tangent_cols, variables), variables]
    )
    keys = draw_rngs(scope, rngs)
    lifted = to_variables(diff_group, typ=core.Param)  # see vjp
    var_tangents = to_variables(
        {col: variable_tangents[col] for col in diff_group}, typ=core.Param
    )

    def pure(diff: dict, *primals: Any) -> tuple:
        inner = inner_scope(scope, _merge(from_variables(diff), other_group), keys, variables)
        y = fn(inner, *primals)
        return y, _store_split(diff, inner.mutable_variables())

    y, out_tangent, created = core.jvp(
        pure, (lifted, *primals), (var_tangents, *tangents), has_aux=True
    )
    write_back(scope, updated_collections(scope, lifted, created))
    return y, out_tangent


def value_and_grad(
    fn: ScopeFn,
    scope: Scope,
    *primals: Any,
    has_aux: bool = False,
    reduce_axes: Any = (),
    variables: CollectionFilter = True,
    rngs: PRNGSequenceFilter = True,
) -> tuple:
    """Gradient of ``fn(scope, *primals)`` w.r.t. the primals (variables are constants)."""
    if reduce_axes:
        raise NotImplementedError("reduce_axes is not supported (removed from JAX).")
    (group,) = group_collections(scope.variables(), [variables])
    keys = draw_rngs(scope, rngs)
    lifted = to_variables(group)

    def pure(group: dict, *primals: Any) -> tuple:
        inner = inner_scope(scope, from_variables(group), keys, variables)
        out = fn(inner, *primals)
        y, aux = out if has_aux else (out, None)
        return y, (aux, store(group, inner.mutable_variables()))

    # Argument 0 (the variables) is not differentiated; the engine writes its updates back.
    argnums = tuple(range(1, len(primals) + 1))
    (y, (aux, created)), grads = core.value_and_grad(pure, argnums=argnums, has_aux=True)(
        lifted, *primals
    )
    write_back(scope, updated_collections(scope, lifted, created))
    return ((y, aux), grads) if has_aux else (y, grads)


def custom_vjp(
    fn: ScopeFn,
    forward_fn: ScopeFn,
    backward_fn: Callable[..., Any],
    grad_vars: CollectionFilter = "params",
    nondiff_argnums: Sequence[int] = (),
) -> ScopeFn:
    """Lifted ``jax.custom_vjp``.

    ``forward_fn(scope, *args) -> (y, residuals)``; ``backward_fn(residuals, y_cotangent)``
    returns ``(grad_vars_grads, *arg_grads)``. Variables created or updated inside (e.g.
    during init) are written back; they get no gradient.
    """
    nondiff = tuple(nondiff_argnums)

    def wrapper(scope: Scope, *args: Any) -> Any:
        diff_group, other_group = group_collections(scope.variables(), [grad_vars, True])
        keys = draw_rngs(scope, True)
        lifted = to_variables(diff_group)

        def run(body: ScopeFn, diff: dict, call_args: tuple) -> tuple[Any, dict]:
            inner = inner_scope(scope, _merge(from_variables(diff), other_group), keys, True)
            out = body(inner, *call_args)
            # A custom_vjp output needs a cotangent, so created variables leave as arrays.
            return out, from_variables(_store_split(diff, inner.mutable_variables()))

        def call_fn(diff: dict, *call_args: Any) -> Any:
            return run(fn, diff, call_args)

        def fwd(diff: dict, *call_args: Any) -> tuple:
            (y, res), mutated = run(forward_fn, diff, call_args)
            return (y, mutated), res

        def bwd(*nondiff_res_g: Any) -> tuple:
            # core passes (*nondiff args, residual, (variable update cotangents, out cotangent))
            res, (_, (g, _)) = nondiff_res_g[-2], nondiff_res_g[-1]
            var_grads, *arg_grads = backward_fn(res, g)
            return (var_grads, *arg_grads)

        f = core.custom_vjp(call_fn, nondiff_argnums=tuple(i + 1 for i in nondiff))
        f.defvjp(fwd, bwd)
        y, created = f(lifted, *args)
        write_back(scope, updated_collections(scope, lifted, {}), _only_mutable(scope, created))
        return y

    return wrapper


# --- variable mapping ----------------------------------------------------------------------


def map_variables(
    fn: ScopeFn,
    mapped_collections: CollectionFilter,
    map_in_fn: Callable[..., Any] = lambda x: x,
    map_out_fn: Callable[..., Any] = lambda x: x,
    init: bool = False,
    mutable: bool = False,
    rngs: PRNGSequenceFilter = True,
    variables: CollectionFilter = True,
) -> ScopeFn:
    """Runs ``fn`` on a scope whose ``mapped_collections`` are ``map_in_fn(collections)``.

    When the mapped collections may change inside (``mutable=True``, or ``init=True`` during
    initialization), the result is stored back through ``map_out_fn``.
    """

    def wrapper(scope: Scope, *args: Any, **kwargs: Any) -> Any:
        target, others = group_collections(
            scope.variables(), [intersect_filters(mapped_collections, variables), variables]
        )
        target_out = mutable or init
        inner_mutable: CollectionFilter = variables
        if not target_out:
            inner_mutable = intersect_filters(variables, _complement(mapped_collections))
        if init and not is_filter_empty(intersect_filters(scope.mutable, mapped_collections)):
            inner = inner_scope(scope, _merge(target, others), draw_rngs(scope, rngs), variables)
            fn(inner, *args, **kwargs)
            (created,) = group_collections(inner.mutable_variables(), [mapped_collections])
            target = map_out_fn(created) if created else target
        inner = inner_scope(
            scope,
            _merge(map_in_fn(dict(target)), others),
            draw_rngs(scope, rngs),
            inner_mutable,
        )
        y = fn(inner, *args, **kwargs)
        out_target, out_others = group_collections(
            inner.mutable_variables(), [mapped_collections, True]
        )
        if target_out and out_target:
            write_back(scope, _only_mutable(scope, map_out_fn(out_target)))
        write_back(scope, out_others)
        return y

    return wrapper


def _complement(col_filter: CollectionFilter) -> CollectionFilter:
    from ._filters import DenyList

    if isinstance(col_filter, DenyList):
        return col_filter.deny
    return DenyList(col_filter)


def add_metadata_axis(
    fn: ScopeFn,
    variable_axes: Mapping[CollectionFilter, Any],
    metadata_params: Mapping[Any, Any] | None = None,
) -> ScopeFn:
    """Runs ``fn`` with boxed metadata axes removed on the way in and added on the way out
    (for use under a plain ``jax.vmap``)."""
    filters = list(variable_axes)
    axes = [variable_axes[f] for f in filters]
    params = dict(metadata_params or {})

    def wrapper(scope: Scope, *args: Any, **kwargs: Any) -> Any:
        *groups, rest = group_collections(scope.variables(), [*filters, True])
        groups = [
            meta.remove_axis(g, ax, params) if ax is not None else g
            for g, ax in zip(groups, axes, strict=True)
        ]
        inner = inner_scope(scope, _merge(*groups, rest), draw_rngs(scope), True)
        y = fn(inner, *args, **kwargs)
        *out_groups, out_rest = group_collections(inner.mutable_variables(), [*filters, True])
        out_groups = [
            meta.add_axis(g, ax, params) if ax is not None else g
            for g, ax in zip(out_groups, axes, strict=True)
        ]
        write_back(scope, *out_groups, out_rest)
        return y

    return wrapper


def fold_rngs(
    fn: ScopeFn, variables: CollectionFilter = True, rngs: PRNGSequenceFilter = True
) -> ScopeFn:
    """Runs ``fn`` on an inner scope whose RNG streams are seeded by one fresh key per
    stream of the outer scope (no JAX transform)."""

    def wrapper(scope: Scope, *args: Any, **kwargs: Any) -> Any:
        (group,) = group_collections(scope.variables(), [variables])
        inner = inner_scope(scope, group, draw_rngs(scope, rngs), variables)
        y = fn(inner, *args, **kwargs)
        write_back(scope, inner.mutable_variables())
        return y

    return wrapper
