"""``custom_vjp`` for functions of stateful objects.

As in Flax NNX, objects propagate their state updates as extra outputs, so the cotangent
the backward rule receives is ``(input_updates_g, out_g)``: ``input_updates_g`` has one
entry per differentiable argument (a ``State`` of cotangents for every Variable of each
object in it, None for plain arrays) and ``out_g`` is the output's cotangent. The rule
returns one tangent per differentiable argument: a ``State`` of the differentiable
Variables for objects (all of them, or those matching a ``DiffState`` filter given in
``nondiff_argnums``), arrays for arrays. Integer ``nondiff_argnums`` mark plain
non-differentiable arguments; they are passed first to the backward rule.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import jax
import jax.numpy as jnp

from .._lift import resolve_graph_updates
from .._lift import DiffState, Lifted, StaticBox, is_lift_leaf, lift, resolve_graph_mode
from .._state import State, flat_paths_and_leaves, nest
from .._variable import Variable
from ._autodiff import _DiffPlan, _zero_cotangent
from ._common import MISSING, resolve_kwargs
from ._errors import BAD_OUTPUT, OutputError, TransformError

__all__ = ["custom_vjp", "CustomVjp"]

A = TypeVar("A")


class CustomVjp(Generic[A]):
    """A function with a custom backward rule; set the rule with :meth:`defvjp`."""

    def __init__(self, fun: Callable[..., A], nondiff_argnums: tuple[int | DiffState, ...],
                 graph: bool | None = None, graph_updates: bool | None = None):
        functools.update_wrapper(self, fun, updated=())
        self.fun = fun
        self.nondiff_argnums = tuple(nondiff_argnums)
        self.int_nondiff = tuple(i for i in nondiff_argnums if isinstance(i, int))
        self.filters: dict[int, Any] = {}
        seen: set[int] = set()
        for entry in nondiff_argnums:
            index = entry.argnum if isinstance(entry, DiffState) else entry
            if index in seen:
                raise TransformError(f"custom_vjp: argnum {index} is repeated in nondiff_argnums.")
            seen.add(index)
            if isinstance(entry, DiffState):
                self.filters[index] = entry.filter
        self.graph = resolve_graph_mode(graph)
        self.graph_updates = resolve_graph_updates(graph_updates)
        self.fwd: Callable[..., Any] | None = None
        self.bwd: Callable[..., Any] | None = None
        self.symbolic_zeros = False

    def defvjp(self, fwd: Callable[..., tuple[A, Any]], bwd: Callable[..., tuple[Any, ...]],
               symbolic_zeros: bool = False) -> None:
        """Sets the forward rule ``fwd(*args) -> (out, residual)`` and the backward rule
        ``bwd(*nondiff_args, residual, (input_updates_g, out_g)) -> tangents``."""
        self.fwd = fwd
        self.bwd = bwd
        self.symbolic_zeros = symbolic_zeros

    def __call__(self, *args: Any, **kwargs: Any) -> A:
        if self.fwd is None or self.bwd is None:
            raise TransformError(
                f"custom_vjp: {getattr(self.fun, '__name__', self.fun)} has no backward rule. "
                "Fix: call .defvjp(fwd, bwd) before using it."
            )
        args = resolve_kwargs(self.fun, args, kwargs)
        n = len(args)
        nondiff = sorted(i % n for i in self.int_nondiff if -n <= i < n)
        for i in nondiff:
            if any(is_lift_leaf(x) for x in jax.tree_util.tree_leaves(args[i], is_leaf=is_lift_leaf)):
                raise TransformError(
                    f"custom_vjp: argument {i} holds graph nodes or Variables but is listed as an "
                    "integer in nondiff_argnums. Integers cannot mark objects non-differentiable.\n"
                    f"Fix: use DiffState({i}, filter) to choose which of its Variables are "
                    "differentiable (e.g. DiffState(i, nnx.Param))."
                )
        diff_positions = [i for i in range(n) if i not in nondiff]
        prefixes = [None] * n
        for i in diff_positions:
            prefixes[i] = DiffState(i, self.filters.get(i, ...))
        lifted = lift(
            args, {}, prefix=tuple(prefixes), graph=self.graph, graph_updates=self.graph_updates,
            transform="custom_vjp", prefix_name="nondiff_argnums", mappings_on_leaves=True,
        )
        plan = _DiffPlan(lifted, [(i, self.filters.get(i, ...)) for i in diff_positions])
        diff, other_vars, _ = plan.split()
        nd_args = tuple(args[i] for i in nondiff)
        fn = _build(self, lifted, plan, diff_positions)
        in_values, out, box = fn(nd_args, diff, other_vars)
        lifted.write_back(box.value, in_values)
        return out  # type: ignore[no-any-return]


def _build(spec: CustomVjp[Any], lifted: Lifted, plan: _DiffPlan, diff_positions: list[int]) -> Any:
    sk = lifted.skeleton
    fun, user_fwd, user_bwd = spec.fun, spec.fwd, spec.bwd

    def rebuild(nd_args: tuple[Any, ...], diff: Any, other_vars: list[Any]) -> Any:
        nd_leaves = jax.tree_util.tree_leaves(nd_args, is_leaf=is_lift_leaf)
        values, leaves = plan.join(diff, other_vars, nd_leaves)
        return sk.enter(values, leaves)

    def finish(call: Any, out: Any, transform: str) -> Any:
        in_values, _, out_leaves, info, _, _ = call.exit(out)
        if info.out_node_slots or info.out_static:
            slot = (info.out_node_slots + tuple(i for i, _ in info.out_static))[0]
            path, leaf = jax.tree_util.tree_leaves_with_path(out, is_leaf=is_lift_leaf)[slot]
            raise OutputError(
                BAD_OUTPUT.format(
                    transform=transform, type_name=type(leaf).__name__,
                    path=jax.tree_util.keystr(path),
                )
                + " A custom_vjp output needs a cotangent, so it must be arrays."
            )
        return in_values, jax.tree_util.tree_unflatten(info.out_treedef, out_leaves), StaticBox(info)

    def primal(nd_args: tuple[Any, ...], diff: Any, other_vars: list[Any]) -> Any:
        call = rebuild(nd_args, diff, other_vars)
        return finish(call, fun(*call.args), "custom_vjp")

    def fwd(nd_args: tuple[Any, ...], diff: Any, other_vars: list[Any]) -> Any:
        if spec.symbolic_zeros:
            diff, other_vars = jax.tree_util.tree_map(
                lambda p: p.value, (diff, other_vars), is_leaf=lambda p: hasattr(p, "perturbed")
            )
        call = rebuild(nd_args, diff, other_vars)
        result = user_fwd(*call.args)  # type: ignore[misc]
        if not (isinstance(result, tuple) and len(result) == 2):
            raise OutputError(
                f"custom_vjp: the forward rule must return (output, residual), got "
                f"{type(result).__name__}."
            )
        out, residual = result
        primal_out = finish(call, out, "custom_vjp forward rule")
        res_lifted = lift((residual,), {}, graph=sk.graph, transform="custom_vjp residual")
        res = (StaticBox(res_lifted.skeleton), res_lifted.values(), list(res_lifted.leaves))
        return primal_out, (res, other_vars)

    def bwd(nd_args: tuple[Any, ...], saved: Any, g: Any) -> Any:
        (res_box, res_values, res_leaves), other_vars = saved
        residual = res_box.value.enter(res_values, res_leaves).args[0]
        in_values_g, out_g, _ = g
        updates_g = _input_updates(lifted, plan, diff_positions, in_values_g)
        tangents = user_bwd(*nd_args, residual, (updates_g, out_g))  # type: ignore[misc]
        if not isinstance(tangents, tuple) or len(tangents) != len(diff_positions):
            raise OutputError(
                f"custom_vjp: the backward rule must return a tuple with one tangent per "
                f"differentiable argument ({len(diff_positions)}: positions {diff_positions}), "
                f"got {type(tangents).__name__}"
                + (f" of length {len(tangents)}" if isinstance(tangents, tuple) else "")
                + "."
            )
        diff_ct = _tangent_groups(lifted, plan, diff_positions, tangents)
        other_ct = [_zero_cotangent(x) for x in other_vars]
        return diff_ct, other_ct

    wrapped = jax.custom_vjp(primal, nondiff_argnums=(0,))
    wrapped.defvjp(fwd, bwd, symbolic_zeros=spec.symbolic_zeros)
    return wrapped


def _input_updates(lifted: Lifted, plan: _DiffPlan, diff_positions: list[int], in_values_g: Sequence[Any]) -> tuple[Any, ...]:
    """Per differentiable argument: its structure with a State of update cotangents per object."""
    sk = lifted.skeleton
    per_root: dict[int, tuple[list[Any], list[Any]]] = {}
    for j, ct in enumerate(in_values_g):
        path = lifted.var_paths[j]
        var = lifted.variables[j]
        paths, leaves = per_root.setdefault(path[0], ([], []))
        paths.append(path[1:])
        leaves.append(var.copy(ct) if isinstance(var, Variable) else ct)
    node_index = {slot: k for k, slot in enumerate(sk.node_slots)}
    out = []
    for i in diff_positions:
        parts = []
        for p, a in enumerate(lifted.flat_arg_index):
            if a != i:
                continue
            if p in node_index:
                k = node_index[p]
                paths, leaves = per_root.get(k, ([], []))
                if paths == [()]:
                    parts.append(leaves[0])
                else:
                    parts.append(State(nest(paths, leaves), _copy=False))
            else:
                parts.append(None)
        treedef = jax.tree_util.tree_structure(_arg_of(lifted, i), is_leaf=is_lift_leaf)
        out.append(jax.tree_util.tree_unflatten(treedef, parts))
    return tuple(out)


def _arg_of(lifted: Lifted, index: int) -> Any:
    args, _ = jax.tree_util.tree_unflatten(
        lifted.skeleton.treedef,
        [_Marker()] * (len(lifted.skeleton.node_slots) + len(lifted.skeleton.leaf_slots)),
    )
    return args[index]


class _Marker:
    """A stand-in leaf used to recover an argument's container structure."""


def _is_tangent_leaf(x: Any) -> bool:
    return isinstance(x, (State, Variable)) or is_lift_leaf(x)


def _tangent_groups(lifted: Lifted, plan: _DiffPlan, diff_positions: list[int], tangents: tuple[Any, ...]) -> Any:
    sk = lifted.skeleton
    node_index = {slot: k for k, slot in enumerate(sk.node_slots)}
    leaf_index = {slot: j for j, slot in enumerate(sk.leaf_slots)}
    groups = []
    for g, (i, tangent) in enumerate(zip(diff_positions, tangents, strict=False)):
        positions = [p for p, a in enumerate(lifted.flat_arg_index) if a == i]
        parts = jax.tree_util.tree_leaves(tangent, is_leaf=lambda x: x is None or _is_tangent_leaf(x))
        if len(parts) != len(positions):
            raise OutputError(
                f"custom_vjp: the tangent for argument {i} has {len(parts)} parts but the "
                f"argument has {len(positions)} (an object counts as one, given as a State)."
            )
        root_t: dict[int, Any] = {}
        leaf_t: dict[int, Any] = {}
        for p, t in zip(positions, parts, strict=False):
            if p in node_index:
                root_t[node_index[p]] = t
            else:
                leaf_t[leaf_index[p]] = t
        var_ct = []
        for j in plan.var_groups[g]:
            path = lifted.var_paths[j]
            var_ct.append(_find(root_t.get(path[0]), path[1:], lifted.variables[j]))
        leaf_ct = [
            leaf_t[j] if leaf_t.get(j) is not None else _zero_cotangent(lifted.leaves[j])
            for j in plan.leaf_groups[g]
        ]
        groups.append((var_ct, leaf_ct))
    return tuple(groups)


def _find(tangent: Any, path: tuple[Any, ...], var: Any) -> Any:
    raw = var.get_raw_value() if isinstance(var, Variable) else var
    if tangent is None:
        return _zero_cotangent(raw)
    if isinstance(tangent, Variable):
        return tangent.get_raw_value() if path == () else _zero_cotangent(raw)
    if isinstance(tangent, State):
        paths, leaves = flat_paths_and_leaves(tangent)
        for p, leaf in zip(paths, leaves, strict=False):
            if tuple(p) == tuple(path):
                return leaf.get_raw_value() if isinstance(leaf, Variable) else leaf
        return _zero_cotangent(raw)
    return jnp.asarray(tangent)


def custom_vjp(
    fun: Callable[..., A] | Any = MISSING,
    *,
    nondiff_argnums: tuple[int | DiffState, ...] = (),
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> Any:
    """``jax.custom_vjp`` for functions of stateful objects (see the module docstring).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from plait.core import Object, Param, custom_vjp, grad
        >>> class Foo(Object):
        ...     def __init__(self):
        ...         self.x = Param(jnp.array(1.0))
        ...         self.y = Param(jnp.array(2.0))
        >>> @custom_vjp
        ... def f(m):
        ...     return jnp.sin(m.x[...]) * m.y[...]
        >>> def f_fwd(m):
        ...     return f(m), (jnp.cos(m.x[...]), jnp.sin(m.x[...]), m)
        >>> def f_bwd(res, g):
        ...     (m_updates_g,), out_g = g
        ...     cos_x, sin_x, m = res
        ...     m_g = jax.tree.map(lambda v: v, m_updates_g)
        ...     m_g['x'][...] = cos_x * out_g * m.y[...]
        ...     m_g['y'][...] = sin_x * out_g
        ...     return (m_g,)
        >>> f.defvjp(f_fwd, f_bwd)
        >>> grads = grad(f)(Foo())
        >>> round(float(grads['x'][...]), 4), round(float(grads['y'][...]), 4)
        (1.0806, 0.8415)
    """
    if fun is MISSING:
        return functools.partial(custom_vjp, nondiff_argnums=nondiff_argnums, graph=graph,
                                 graph_updates=graph_updates)
    return CustomVjp(fun, tuple(nondiff_argnums), graph, graph_updates)
