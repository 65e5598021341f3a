"""``grad``, ``value_and_grad``, ``vjp``, ``jvp`` over stateful objects.

The differentiable inputs are, per differentiated argument, the Variables its graph nodes
hold that match its :class:`DiffState` filter (``Param`` by default) plus its plain array
leaves. Everything else (other Variables such as batch statistics or RNG counters, other
arguments) goes in as non-differentiated values, and every update made inside is written
back to the original objects. In graph mode the gradient of a graph node is a ``State`` of
its differentiable Variables (copies of them holding the gradients); in tree mode it is an
object of the same type whose other Variables hold zeros.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._graph import unflatten
from .._graphdef import GraphDef
from .._lift import resolve_graph_updates
from .._lift import (
    DiffState,
    Lifted,
    StaticBox,
    lift,
    node_states,
    resolve_graph_mode,
)
from .._state import State, flat_paths_and_leaves
from .._variable import Param, Variable
from ._common import MISSING, resolve_kwargs, unbind, wraps
from ._errors import OutputError, TransformError

__all__ = ["grad", "value_and_grad", "vjp", "jvp", "DiffState"]


def _normalize_argnums(argnums: Any, transform: str) -> tuple[list[tuple[int, Any]], bool]:
    """``[(argnum, filter), ...]`` and whether a single (non-sequence) argnum was given."""
    single = isinstance(argnums, (int, DiffState))
    items = [argnums] if single else list(argnums)
    out: list[tuple[int, Any]] = []
    seen: set[int] = set()
    for item in items:
        if isinstance(item, DiffState):
            index, filt = item.argnum, item.filter
        elif isinstance(item, int):
            index, filt = item, Param
        else:
            raise TransformError(
                f"{transform}: argnums entries must be ints or DiffState(argnum, filter), got "
                f"{item!r}."
            )
        if index in seen:
            raise TransformError(f"{transform}: argnum {index} is repeated in argnums={argnums!r}.")
        seen.add(index)
        out.append((index, filt))
    return out, single


def _zero_cotangent(x: Any) -> Any:
    dtype = getattr(x, "dtype", None)
    if dtype is not None and jnp.issubdtype(dtype, jnp.inexact):
        return jnp.zeros_like(x)
    return np.zeros(np.shape(x), dtype=jax.dtypes.float0)


class _DiffPlan:
    """How a call's state splits into differentiated groups (one per argnum) and the rest."""

    def __init__(self, lifted: Lifted, argnums: list[tuple[int, Any]]):
        self.lifted = lifted
        self.argnums = argnums
        group_of_arg = {index: g for g, (index, _) in enumerate(argnums)}
        self.var_groups: list[list[int]] = [[] for _ in argnums]
        self.leaf_groups: list[list[int]] = [[] for _ in argnums]
        self.other_vars: list[int] = []
        self.other_leaves: list[int] = []
        for j, (spec, path) in enumerate(zip(lifted.var_specs, lifted.var_paths, strict=False)):
            g = group_of_arg.get(lifted.root_arg(path[0]))
            if g is not None and spec:
                self.var_groups[g].append(j)
            else:
                self.other_vars.append(j)
        for j, spec in enumerate(lifted.leaf_specs):
            g = group_of_arg.get(lifted.leaf_arg(j))
            if g is not None and spec is not None:
                self.leaf_groups[g].append(j)
            else:
                self.other_leaves.append(j)

    def split(self) -> tuple[Any, Any, Any]:
        values = self.lifted.values()
        leaves = self.lifted.leaves
        diff = tuple(
            ([values[j] for j in vg], [leaves[j] for j in lg])
            for vg, lg in zip(self.var_groups, self.leaf_groups, strict=False)
        )
        return diff, [values[j] for j in self.other_vars], [leaves[j] for j in self.other_leaves]

    def join(self, diff: Any, other_vars: Sequence[Any], other_leaves: Sequence[Any]) -> tuple[list[Any], list[Any]]:
        values: list[Any] = [None] * len(self.lifted.variables)
        leaves: list[Any] = [None] * len(self.lifted.leaves)
        for (vg, lg), (dv, dl) in zip(zip(self.var_groups, self.leaf_groups, strict=False), diff, strict=False):
            for j, x in zip(vg, dv, strict=False):
                values[j] = x
            for j, x in zip(lg, dl, strict=False):
                leaves[j] = x
        for j, x in zip(self.other_vars, other_vars, strict=False):
            values[j] = x
        for j, x in zip(self.other_leaves, other_leaves, strict=False):
            leaves[j] = x
        return values, leaves

    def arg_gradient(self, args: tuple[Any, ...], g: int, grads: Any) -> Any:
        """The gradient for argnum group ``g``: the argument's structure with grads inside."""
        lifted = self.lifted
        index = self.argnums[g][0]
        var_grads, leaf_grads = grads
        sk = lifted.skeleton
        roots_here = [k for k in range(len(sk.node_slots)) if lifted.root_arg(k) == index]
        per_root: dict[int, Any]
        if sk.graph:
            grad_of = dict(zip(self.var_groups[g], var_grads, strict=False))
            variable_roots = {k for k in roots_here if isinstance(_root_object(lifted, k), Variable)}
            selected = [j for j in self.var_groups[g] if lifted.var_paths[j][0] not in variable_roots]
            per_root = node_states(lifted, [grad_of[j] for j in selected], selected)
            for k in roots_here:
                if k in variable_roots:
                    root_obj = _root_object(lifted, k)
                    j = lifted.var_paths.index((k,))
                    value = grad_of[j] if j in grad_of else _zero_cotangent(root_obj.get_raw_value())
                    per_root[k] = root_obj.copy(value)
                else:
                    per_root.setdefault(k, State({}, _copy=False))
        else:
            per_root = _tree_mode_gradients(lifted, roots_here, self.var_groups[g], var_grads)
        leaf_map = dict(zip(self.leaf_groups[g], leaf_grads, strict=False))
        flat_positions = [p for p, a in enumerate(lifted.flat_arg_index) if a == index]
        node_index = {slot: k for k, slot in enumerate(sk.node_slots)}
        leaf_index = {slot: j for j, slot in enumerate(sk.leaf_slots)}
        _, treedef = jax.tree_util.tree_flatten(args[index], is_leaf=_is_lift_leaf)
        out = []
        for p in flat_positions:
            if p in node_index:
                out.append(per_root[node_index[p]])
            else:
                out.append(leaf_map.get(leaf_index[p]))
        return jax.tree_util.tree_unflatten(treedef, out)


def _is_lift_leaf(x: Any) -> bool:
    from .._lift import is_lift_leaf

    return is_lift_leaf(x)


def _root_object(lifted: Lifted, k: int) -> Any:
    return lifted.root_object(k)


def _tree_mode_gradients(lifted: Lifted, roots: list[int], selected: list[int], grads: Sequence[Any]) -> dict[int, Any]:
    """Tree mode: per root, an object of the root's type holding gradients (zeros elsewhere)."""
    grad_of = dict(zip(selected, grads, strict=False))
    out: dict[int, Any] = {}
    for k in roots:
        root_def = lifted.skeleton.graphdef._root[4][k]
        positions = [j for j, path in enumerate(lifted.var_paths) if path[0] == k]
        values = [
            grad_of[j] if j in grad_of else _zero_cotangent(
                lifted.variables[j].get_raw_value() if isinstance(lifted.variables[j], Variable) else lifted.variables[j]
            )
            for j in positions
        ]
        out[k] = unflatten(GraphDef(root_def, len(values)), values)
    return out


def _check_reduce_axes(reduce_axes: Sequence[Any], transform: str) -> None:
    if reduce_axes:
        raise NotImplementedError(
            f"{transform}: reduce_axes is not supported (JAX removed it). Fix: reduce over the "
            "named axis yourself, e.g. with jax.lax.psum on the gradients."
        )


def _grad_general(f: Callable[..., Any], argnums: Any, has_aux: bool, holomorphic: bool,
                  allow_int: bool, graph: bool | None, graph_updates: bool | None,
                  return_value: bool, transform: str) -> Callable[..., Any]:
    normalized, single = _normalize_argnums(argnums, transform)
    graph_mode = resolve_graph_mode(graph)
    updates = resolve_graph_updates(graph_updates)
    bound_f = f
    f, bound_self = unbind(f)
    if bound_self is not None:  # the object becomes argument 0; user positions shift by one
        normalized = [(i + 1 if i >= 0 else i, filt) for i, filt in normalized]

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        args = resolve_kwargs(bound_f, args, kwargs)
        if bound_self is not None:
            args = (bound_self, *args)
        for index, _ in normalized:
            if not -len(args) <= index < len(args):
                raise TransformError(
                    f"{transform}: argnums refers to argument {index} but the function got "
                    f"{len(args)} positional arguments."
                )
        argnums_abs = [(i % len(args), filt) for i, filt in normalized]
        prefixes = [None] * len(args)
        for i, filt in argnums_abs:
            prefixes[i] = DiffState(i, filt)
        lifted = lift(
            args, {}, prefix=tuple(prefixes), graph=graph_mode, graph_updates=updates,
            transform=transform, prefix_name="argnums", mappings_on_leaves=True,
        )
        plan = _DiffPlan(lifted, argnums_abs)
        diff, other_vars, other_leaves = plan.split()
        skeleton = lifted.skeleton

        def pure(diff_in: Any, other_vars_in: list[Any], other_leaves_in: list[Any]) -> Any:
            values, leaves = plan.join(diff_in, other_vars_in, other_leaves_in)
            call = skeleton.enter(values, leaves)
            out = f(*call.args, **call.kwargs)
            if has_aux:
                if not (isinstance(out, tuple) and len(out) == 2):
                    raise OutputError(
                        f"{transform}(has_aux=True): the function must return a pair "
                        f"(loss, aux), got {type(out).__name__}."
                    )
                loss, aux = out
            else:
                loss, aux = out, None
            in_values, out_values, out_leaves, info, _, _ = call.exit(aux)
            return loss, (in_values, out_values, out_leaves, StaticBox(info))

        transform_fn = jax.value_and_grad if return_value else jax.grad
        result = transform_fn(pure, argnums=0, has_aux=True, holomorphic=holomorphic, allow_int=allow_int)(
            diff, other_vars, other_leaves
        )
        if return_value:
            (loss, (in_values, out_values, out_leaves, box)), grads = result
        else:
            grads, (in_values, out_values, out_leaves, box) = result
            loss = None
        aux = lifted.apply(box.value, in_values, out_values, out_leaves)
        per_arg = tuple(plan.arg_gradient(args, g, grads[g]) for g in range(len(argnums_abs)))
        gradient = per_arg[0] if single else per_arg
        if return_value:
            return ((loss, aux), gradient) if has_aux else (loss, gradient)
        return (gradient, aux) if has_aux else gradient

    return wraps(bound_f, wrapper)


def grad(
    f: Callable[..., Any] | Any = MISSING,
    *,
    argnums: int | DiffState | Sequence[int | DiffState] = 0,
    has_aux: bool = False,
    holomorphic: bool = False,
    allow_int: bool = False,
    reduce_axes: Sequence[Any] = (),
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> Any:
    """``jax.grad`` for functions of stateful objects.

    For a graph-node argument the gradient is taken w.r.t. its ``Param`` Variables (or those
    matching the filter of a ``DiffState(argnum, filter)`` in ``argnums``) and returned as a
    ``State`` of them; other state updated inside (batch statistics, RNG counters) is
    written back.

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.core import Object, Param, BatchStat, grad
        >>> class Scale(Object):
        ...     def __init__(self):
        ...         self.w = Param(jnp.array(3.0))
        ...         self.calls = BatchStat(jnp.array(0))
        >>> def loss(m, x):
        ...     m.calls[...] += 1
        ...     return m.w[...] * x
        >>> m = Scale()
        >>> grads = grad(loss)(m, 2.0)
        >>> float(grads['w'][...]), int(m.calls[...])
        (2.0, 1)
    """
    _check_reduce_axes(reduce_axes, "grad")
    if f is MISSING:
        return functools.partial(
            grad, argnums=argnums, has_aux=has_aux, holomorphic=holomorphic,
            allow_int=allow_int, graph=graph, graph_updates=graph_updates,
        )
    return _grad_general(f, argnums, has_aux, holomorphic, allow_int, graph, graph_updates, False, "grad")


def value_and_grad(
    f: Callable[..., Any] | Any = MISSING,
    *,
    argnums: int | DiffState | Sequence[int | DiffState] = 0,
    has_aux: bool = False,
    holomorphic: bool = False,
    allow_int: bool = False,
    reduce_axes: Sequence[Any] = (),
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> Any:
    """Like :func:`grad`, returning ``(value, grads)`` (``((value, aux), grads)`` with aux).

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.core import Object, Param, value_and_grad
        >>> class Lin(Object):
        ...     def __init__(self):
        ...         self.w = Param(jnp.array(2.0))
        >>> loss, grads = value_and_grad(lambda m: m.w[...] ** 2)(Lin())
        >>> float(loss), float(grads['w'][...])
        (4.0, 4.0)
    """
    _check_reduce_axes(reduce_axes, "value_and_grad")
    if f is MISSING:
        return functools.partial(
            value_and_grad, argnums=argnums, has_aux=has_aux, holomorphic=holomorphic,
            allow_int=allow_int, graph=graph, graph_updates=graph_updates,
        )
    return _grad_general(f, argnums, has_aux, holomorphic, allow_int, graph, graph_updates, True, "value_and_grad")


# -- vjp / jvp ------------------------------------------------------------------------------------


def _all_argnums(n: int) -> list[tuple[int, Any]]:
    return [(i, Param) for i in range(n)]


def _check_pure_output(out: Any, transform: str) -> None:
    for path, leaf in jax.tree_util.tree_leaves_with_path(out, is_leaf=_is_lift_leaf):
        if _is_lift_leaf(leaf):
            raise OutputError(
                f"{transform}: the function returned a {type(leaf).__name__} at "
                f"out{jax.tree_util.keystr(path)}; the differentiated output must be arrays "
                "(cotangents are matched to it).\n"
                "Fix: return the object through has_aux=True, or return its arrays."
            )


def vjp(
    f: Callable[..., Any] | Any = MISSING,
    *primals: Any,
    has_aux: bool = False,
    reduce_axes: Sequence[Any] = (),
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> Any:
    """``jax.vjp`` for functions of stateful objects.

    Every primal is differentiated; for graph nodes that means their ``Param`` Variables,
    and the cotangent ``vjp_fn`` returns for them is a ``State``. State updated inside is
    written back when ``vjp`` runs the forward pass.

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.core import Object, Param, vjp
        >>> class Lin(Object):
        ...     def __init__(self):
        ...         self.w = Param(jnp.array(2.0))
        >>> out, vjp_fn = vjp(lambda m, x: m.w[...] * x, Lin(), jnp.array(3.0))
        >>> m_ct, x_ct = vjp_fn(jnp.array(1.0))
        >>> float(out), float(m_ct['w'][...]), float(x_ct)
        (6.0, 3.0, 2.0)
    """
    _check_reduce_axes(reduce_axes, "vjp")
    if f is MISSING:
        return functools.partial(vjp, has_aux=has_aux, graph=graph, graph_updates=graph_updates)
    graph_mode = resolve_graph_mode(graph)
    updates = resolve_graph_updates(graph_updates)
    args = tuple(primals)
    argnums = _all_argnums(len(args))
    lifted = lift(
        args, {}, prefix=tuple(DiffState(i, Param) for i in range(len(args))), graph=graph_mode,
        graph_updates=updates, transform="vjp", prefix_name="primals", mappings_on_leaves=True,
    )
    plan = _DiffPlan(lifted, argnums)
    diff, other_vars, other_leaves = plan.split()
    skeleton = lifted.skeleton

    def pure(diff_in: Any) -> Any:
        values, leaves = plan.join(diff_in, other_vars, other_leaves)
        call = skeleton.enter(values, leaves)
        out = f(*call.args, **call.kwargs)
        if has_aux:
            out, aux = out
        else:
            aux = None
        _check_pure_output(out, "vjp")
        in_values, out_values, out_leaves, info, _, _ = call.exit(aux)
        return out, (in_values, out_values, out_leaves, StaticBox(info))

    out, jax_vjp_fn, (in_values, out_values, out_leaves, box) = jax.vjp(pure, diff, has_aux=True)
    aux = lifted.apply(box.value, in_values, out_values, out_leaves)

    # A pytree like jax.vjp's own function (its residuals are the leaves), so that it can be
    # returned as the residual of a custom_vjp forward rule.
    vjp_fn = jax.tree_util.Partial(functools.partial(_vjp_cotangents, plan, args), jax_vjp_fn)
    return (out, vjp_fn, aux) if has_aux else (out, vjp_fn)


def _vjp_cotangents(plan: _DiffPlan, args: tuple[Any, ...], jax_vjp_fn: Any, cotangent: Any) -> tuple[Any, ...]:
    (grads,) = jax_vjp_fn(cotangent)
    return tuple(plan.arg_gradient(args, g, grads[g]) for g in range(len(args)))


def _tangent_values(plan: _DiffPlan, args: tuple[Any, ...], tangents: tuple[Any, ...]) -> Any:
    """The tangent groups (like ``plan.split()``'s diff) from user tangents shaped like args."""
    lifted = plan.lifted
    sk = lifted.skeleton
    groups = []
    node_index = {slot: k for k, slot in enumerate(sk.node_slots)}
    leaf_index = {slot: j for j, slot in enumerate(sk.leaf_slots)}
    for g, (index, _) in enumerate(plan.argnums):
        positions = [p for p, a in enumerate(lifted.flat_arg_index) if a == index]
        t_flat = jax.tree_util.tree_flatten(
            tangents[index], is_leaf=lambda x: isinstance(x, (State, Variable)) or _is_lift_leaf(x)
        )[0]
        if len(t_flat) != len(positions):
            raise TransformError(
                f"jvp: the tangent of argument {index} has {len(t_flat)} parts but the primal "
                f"has {len(positions)} (graph nodes count as one, given as a State)."
            )
        root_tangent: dict[int, Any] = {}
        leaf_tangent: dict[int, Any] = {}
        for p, t in zip(positions, t_flat, strict=False):
            if p in node_index:
                root_tangent[node_index[p]] = t
            else:
                leaf_tangent[leaf_index[p]] = t
        var_t = []
        for j in plan.var_groups[g]:
            path = lifted.var_paths[j]
            t = root_tangent[path[0]]
            var_t.append(_lookup(t, path[1:], lifted.var_where(j)))
        groups.append((var_t, [leaf_tangent[j] for j in plan.leaf_groups[g]]))
    return tuple(groups)


def _lookup(tangent: Any, path: tuple[Any, ...], where: str) -> Any:
    if isinstance(tangent, Variable):
        return tangent.get_raw_value()
    if isinstance(tangent, State) or isinstance(tangent, dict):
        paths, leaves = flat_paths_and_leaves(tangent)
        for p, leaf in zip(paths, leaves, strict=False):
            if tuple(p) == tuple(path):
                return leaf.get_raw_value() if isinstance(leaf, Variable) else leaf
        raise TransformError(
            f"jvp: the tangent State has no entry for {where} (path {path}). Fix: give a "
            "tangent for every differentiable Variable, e.g. jax.tree.map(jnp.ones_like, "
            "nnx.state(model, nnx.Param))."
        )
    if _is_lift_leaf(tangent):
        raise TransformError(
            f"jvp: the tangent for {where} is an object; pass a State of its Param Variables."
        )
    raise TransformError(f"jvp: unsupported tangent of type {type(tangent).__name__} for {where}.")


def jvp(
    f: Callable[..., Any] | Any = MISSING,
    primals: tuple[Any, ...] | Any = MISSING,
    tangents: tuple[Any, ...] | Any = MISSING,
    *,
    has_aux: bool = False,
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> Any:
    """``jax.jvp`` for functions of stateful objects.

    Tangents for graph-node primals are States of their ``Param`` Variables; the output
    tangents are arrays. State updated inside is written back.

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.core import Object, Param, State, jvp
        >>> class Lin(Object):
        ...     def __init__(self):
        ...         self.w = Param(jnp.array(2.0))
        >>> m = Lin()
        >>> out, tangent = jvp(lambda m: m.w[...] ** 2, (m,), (State({'w': jnp.array(1.0)}),))
        >>> float(out), float(tangent)
        (4.0, 4.0)
    """
    if f is MISSING:
        return functools.partial(jvp, has_aux=has_aux, graph=graph, graph_updates=graph_updates)
    if primals is MISSING or tangents is MISSING:
        def bound(primals: Any, tangents: Any) -> Any:
            return jvp(f, primals, tangents, has_aux=has_aux, graph=graph, graph_updates=graph_updates)

        return wraps(f, bound)
    args = tuple(primals)
    tangents = tuple(tangents)
    if len(tangents) != len(args):
        raise TransformError(
            f"jvp: got {len(args)} primals but {len(tangents)} tangents; give one tangent per primal."
        )
    lifted = lift(
        args, {}, prefix=tuple(DiffState(i, Param) for i in range(len(args))),
        graph=resolve_graph_mode(graph), graph_updates=resolve_graph_updates(graph_updates),
        transform="jvp", prefix_name="primals", mappings_on_leaves=True,
    )
    plan = _DiffPlan(lifted, _all_argnums(len(args)))
    diff, other_vars, other_leaves = plan.split()
    diff_tangents = _tangent_values(plan, args, tangents)
    skeleton = lifted.skeleton

    def pure(diff_in: Any) -> Any:
        values, leaves = plan.join(diff_in, other_vars, other_leaves)
        call = skeleton.enter(values, leaves)
        out = f(*call.args, **call.kwargs)
        if has_aux:
            out, aux = out
        else:
            aux = None
        _check_pure_output(out, "jvp")
        in_values, out_values, out_leaves, info, _, _ = call.exit(aux)
        return out, (in_values, out_values, out_leaves, StaticBox(info))

    out, out_tangent, (in_values, out_values, out_leaves, box) = jax.jvp(
        pure, (diff,), (diff_tangents,), has_aux=True
    )
    aux = lifted.apply(box.value, in_values, out_values, out_leaves)
    return (out, out_tangent, aux) if has_aux else (out, out_tangent)
