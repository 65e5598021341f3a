"""``vmap``, ``pmap`` and ``scan`` over stateful objects, with per-filter axes.

``in_axes`` / ``out_axes`` are prefixes of the arguments / output as in JAX; at a graph
node they may be a :class:`StateAxes` that gives each Variable its own axis (``None``:
broadcast; :class:`Carry` in ``scan``: carried). A Variable's updated value leaves the
transform with the axis it came in with; Variables of objects created inside get the axis
``out_axes`` gives them (so ``vmap`` over a constructor builds a stacked model).

RNG streams are state like any other: split them first (``split_rngs``) and map their
keys (``StateAxes({RngState: 0, ...: None})`` or a plain axis), or broadcast them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from .._graph import iter_graph
from .._lift import resolve_graph_updates
from .._lift import (
    Carry,
    InnerCall,
    Lifted,
    StateAxes,
    StaticBox,
    broadcast_out_prefix,
    check_output_aliasing,
    distinct,
    group_by,
    is_prefix_leaf,
    lift,
    resolve_graph_mode,
    resolve_spec,
)
from .._sharding import add_axis, remove_axis
from .._variable import Variable
from ..frozen_dict import FrozenDict
from ._common import MISSING, resolve_kwargs, shift_prefix, unbind, wraps
from ._errors import LOOP_STRUCTURE, CarryError, PrefixError, TransformError

__all__ = ["vmap", "pmap", "scan", "Carry", "StateAxes"]


# -- shared by vmap / pmap / shard_map -------------------------------------------------------


def prefix_values(*trees: Any) -> list[Any]:
    """Every value a prefix tree can assign (filter mapping values included), plus None."""
    values: list[Any] = [None]
    for tree in trees:
        for leaf in jax.tree_util.tree_leaves(tree, is_leaf=is_prefix_leaf):
            if isinstance(leaf, Mapping):
                values.extend(leaf.values())
            else:
                values.append(leaf)
    return distinct(values)


def _inner_input_variables(call: InnerCall, lifted_specs: Sequence[Any]) -> list[tuple[Any, Any]]:
    """(inner Variable, spec) for the input Variables rebuilt inside the transform."""
    out = []
    for index, spec in zip(call.skeleton.leaf_indices, lifted_specs, strict=False):
        if index >= 0:
            out.append((call.index_ref[index], spec))
    return out


def _new_output_variables(call: InnerCall, out: Any, out_prefix: Any, transform: str, name: str) -> list[tuple[Any, Any]]:
    """(Variable, spec) for Variables in the output that were not inputs."""
    from .._lift import is_lift_leaf

    prefixes = broadcast_out_prefix(out_prefix, out, transform=transform, name=name)
    leaves = jax.tree_util.tree_leaves(out, is_leaf=is_lift_leaf)
    known = {id(obj) for obj in call.index_ref.values()}
    seen: set[int] = set()
    found = []
    for prefix, leaf in zip(prefixes, leaves, strict=False):
        if not is_lift_leaf(leaf):
            continue
        items = [((), leaf)] if isinstance(leaf, Variable) else iter_graph(leaf)
        for path, value in items:
            if isinstance(value, Variable) and id(value) not in known and id(value) not in seen:
                seen.add(id(value))
                found.append((value, resolve_spec(prefix, path, value, transform=transform, where="output")))
    return found


def mapped_pure(
    lifted: Lifted,
    f: Callable[..., Any],
    out_prefix: Any,
    keys: Sequence[Any],
    *,
    transform: str,
    in_name: str,
    out_name: str,
    transform_metadata: Mapping[str, Any] | None = None,
    check_spec: Callable[[Any, str], None] | None = None,
) -> Callable[..., Any]:
    """A pure ``(var_values, leaf_values) -> (groups, StaticBox)`` for mapping transforms.

    Dynamic outputs (inputs' new values, new Variables' values, output arrays) are grouped
    by their spec so that a single out-axes/out-specs entry per group can be given to JAX
    before tracing.
    """
    sk = lifted.skeleton

    def pure(var_values: list[Any], leaf_values: list[Any]) -> Any:
        call = sk.enter(var_values, leaf_values)
        inner_inputs = []
        if transform_metadata:
            inner_inputs = _inner_input_variables(call, lifted.var_specs)
            for var, spec in inner_inputs:
                if isinstance(spec, int):
                    remove_axis([var], spec, transform_metadata)
        out = f(*call.args, **call.kwargs)
        if transform_metadata:
            for var, spec in inner_inputs:
                if isinstance(spec, int):
                    add_axis([var], spec, transform_metadata)
            for var, spec in _new_output_variables(call, out, out_prefix, transform, out_name):
                if isinstance(spec, int):
                    add_axis([var], spec, transform_metadata)
        out_prefixes = broadcast_out_prefix(out_prefix, out, transform=transform, name=out_name)
        in_values, out_values, out_leaves, info, in_flat, out_flat = call.exit(out)
        check_output_aliasing(
            lifted, info, [out_prefixes[s] for s in info.out_node_slots],
            transform=transform, name=out_name, in_name=in_name,
        )
        if info.in_graphdef is None:
            in_specs = list(lifted.var_specs)
        else:
            in_specs = [
                resolve_spec(sk.root_prefixes[p[0]], p[1:], v, transform=transform, where=sk.root_names[p[0]])
                for p, v in zip(in_flat.paths, in_flat.leaves, strict=False)  # type: ignore[union-attr]
            ]
        out_var_specs: list[Any] = []
        if out_values:
            root_prefixes = [out_prefixes[s] for s in info.out_node_slots]
            out_var_specs = [
                resolve_spec(root_prefixes[p[0]], p[1:], v, transform=transform, where="output")
                for p, v in zip(out_flat.paths, out_flat.leaves, strict=False)  # type: ignore[union-attr]
            ]
        leaf_specs = [out_prefixes[s] for s in info.out_leaf_slots]
        specs = in_specs + out_var_specs + leaf_specs
        if check_spec is not None:
            for s in out_var_specs + leaf_specs:
                check_spec(s, out_name)
        dyn = list(in_values) + list(out_values) + list(out_leaves)
        buckets, where = group_by(specs, keys)
        groups = tuple([dyn[i] for i in b] for b in buckets)
        return groups, StaticBox((info, tuple(where), len(in_values), len(out_values)))

    return pure


def unpack_mapped(lifted: Lifted, groups: Sequence[Sequence[Any]], box: StaticBox) -> Any:
    """Outside: regroup a :func:`mapped_pure` result, write back, rebuild the output."""
    info, where, n_in, n_out = box.value
    iterators = [iter(g) for g in groups]
    dyn = [next(iterators[b]) for b in where]
    return lifted.apply(info, dyn[:n_in], dyn[n_in:n_in + n_out], dyn[n_in + n_out:])


def _check_axis(transform: str) -> Callable[[Any, str], None]:
    def check(spec: Any, name: str) -> None:
        if spec is not None and not isinstance(spec, int):
            raise PrefixError(
                f"{transform}: {name} values must be ints or None, got {spec!r}.\n"
                "Fix: use an axis index (or None to broadcast); Carry only exists in scan."
            )

    return check


def _check_in_specs(lifted: Lifted, transform: str) -> None:
    check = _check_axis(transform)
    for spec in list(lifted.var_specs) + list(lifted.leaf_specs):
        check(spec, "in_axes")


# -- vmap -------------------------------------------------------------------------------------


def vmap(
    f: Callable[..., Any] | Any = MISSING,
    *,
    in_axes: int | None | Sequence[Any] = 0,
    out_axes: Any = 0,
    axis_name: Any = None,
    axis_size: int | None = None,
    spmd_axis_name: Any = None,
    transform_metadata: Mapping[str, Any] = FrozenDict({}),
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> Any:
    """``jax.vmap`` for functions of stateful objects.

    Args:
        f: the function.
        in_axes: prefix over the positional arguments (keyword arguments are bound to their
            positions); ints, None, or :class:`StateAxes` at graph nodes.
        out_axes: prefix over the output (StateAxes allowed at output objects).
        axis_name, axis_size, spmd_axis_name: as in ``jax.vmap``.
        transform_metadata: ``{PARTITION_NAME: name}`` removes the mapped axis from the
            Variables' ``sharding_names`` inside and inserts ``name`` on the way out.
        graph, graph_updates: graph/tree mode and structural-update propagation.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from plait.core import Object, Param, vmap
        >>> class Lin(Object):
        ...     def __init__(self, key):
        ...         self.w = Param(jax.random.normal(key, (2, 3)))
        >>> ensemble = vmap(Lin)(jax.random.split(jax.random.key(0), 4))
        >>> ensemble.w.shape
        (4, 2, 3)
        >>> vmap(lambda m, x: x @ m.w[...], in_axes=(0, None))(ensemble, jnp.ones(2)).shape
        (4, 3)
    """
    if f is MISSING:
        return functools.partial(
            vmap, in_axes=in_axes, out_axes=out_axes, axis_name=axis_name, axis_size=axis_size,
            spmd_axis_name=spmd_axis_name, transform_metadata=transform_metadata, graph=graph,
            graph_updates=graph_updates,
        )
    graph_mode = resolve_graph_mode(graph)
    updates = resolve_graph_updates(graph_updates)
    keys = prefix_values(in_axes, out_axes)
    in_prefix = tuple(in_axes) if isinstance(in_axes, list) else in_axes
    bound_f = f
    f, bound_self = unbind(f)
    if bound_self is not None:  # a bound method's object is broadcast unless in_axes is one value
        in_prefix = shift_prefix(in_prefix, None)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        args = resolve_kwargs(bound_f, args, kwargs)
        if bound_self is not None:
            args = (bound_self, *args)
        lifted = lift(args, {}, prefix=in_prefix, graph=graph_mode, graph_updates=updates,
                      transform="vmap", prefix_name="in_axes")
        _check_in_specs(lifted, "vmap")
        pure = mapped_pure(
            lifted, f, out_axes, keys, transform="vmap", in_name="in_axes", out_name="out_axes",
            transform_metadata=transform_metadata, check_spec=_check_axis("vmap"),
        )
        vmapped = jax.vmap(
            pure,
            in_axes=(list(lifted.var_specs), list(lifted.leaf_specs)),
            out_axes=(tuple(keys), None),
            axis_name=axis_name,
            axis_size=axis_size,
            spmd_axis_name=spmd_axis_name,
        )
        groups, box = vmapped(lifted.values(), lifted.leaves)
        return unpack_mapped(lifted, groups, box)

    return wraps(bound_f, wrapper)


# -- pmap -------------------------------------------------------------------------------------


def pmap(
    f: Callable[..., Any] | Any = MISSING,
    *,
    axis_name: Any = None,
    in_axes: Any = 0,
    out_axes: Any = 0,
    static_broadcasted_argnums: int | Sequence[int] = (),
    devices: Sequence[Any] | None = None,
    backend: str | None = None,
    axis_size: int | None = None,
    donate_argnums: int | Sequence[int] = (),
    transform_metadata: Mapping[str, Any] = FrozenDict({}),
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> Any:
    """``jax.pmap`` for functions of stateful objects (legacy multi-device API).

    Same prefixes as :func:`vmap`. ``static_broadcasted_argnums`` arguments are passed as
    Python values; ``donate_argnums`` is accepted for compatibility and not used (buffers
    are not donated).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from plait.core import pmap
        >>> n = jax.local_device_count()
        >>> pmap(lambda x: x * 2)(jnp.ones((n, 3))).shape == (n, 3)
        True
    """
    if f is MISSING:
        return functools.partial(
            pmap, axis_name=axis_name, in_axes=in_axes, out_axes=out_axes,
            static_broadcasted_argnums=static_broadcasted_argnums, devices=devices,
            backend=backend, axis_size=axis_size, donate_argnums=donate_argnums,
            transform_metadata=transform_metadata, graph=graph, graph_updates=graph_updates,
        )
    graph_mode = resolve_graph_mode(graph)
    updates = resolve_graph_updates(graph_updates)
    keys = prefix_values(in_axes, out_axes)
    static = (static_broadcasted_argnums,) if isinstance(static_broadcasted_argnums, int) else tuple(static_broadcasted_argnums)
    in_prefix = tuple(in_axes) if isinstance(in_axes, list) else in_axes
    bound_f = f
    f, bound_self = unbind(f)
    if bound_self is not None:
        in_prefix = shift_prefix(in_prefix, None)
        static = tuple(i + 1 if i >= 0 else i for i in static)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        args = resolve_kwargs(bound_f, args, kwargs)
        if bound_self is not None:
            args = (bound_self, *args)
        n = len(args)
        static_pos = sorted(i % n for i in static if -n <= i < n)
        dyn_args = tuple(a for i, a in enumerate(args) if i not in static_pos)
        prefix = in_prefix
        if static_pos and isinstance(prefix, tuple):
            prefix = tuple(p for i, p in enumerate(prefix) if i not in static_pos)

        def with_static(*dyn: Any) -> Any:
            full = list(dyn)
            for pos in static_pos:
                full.insert(pos, args[pos])
            return f(*full)

        lifted = lift(dyn_args, {}, prefix=prefix, graph=graph_mode, graph_updates=updates,
                      transform="pmap", prefix_name="in_axes")
        _check_in_specs(lifted, "pmap")
        pure = mapped_pure(
            lifted, with_static, out_axes, keys, transform="pmap", in_name="in_axes",
            out_name="out_axes", transform_metadata=transform_metadata, check_spec=_check_axis("pmap"),
        )
        pmapped = jax.pmap(
            pure,
            axis_name=axis_name,
            in_axes=(list(lifted.var_specs), list(lifted.leaf_specs)),
            out_axes=(tuple(keys), None),
            devices=devices,
            backend=backend,
            axis_size=axis_size,
        )
        groups, box = pmapped(lifted.values(), lifted.leaves)
        return unpack_mapped(lifted, groups, box)

    return wraps(bound_f, wrapper)


# -- scan -------------------------------------------------------------------------------------


def _carry_position(axes: Any, name: str) -> int | str | None:
    if axes is Carry:
        return "all"
    if not isinstance(axes, (tuple, list)):
        _reject_nested_carry(axes, name, ())
        return None
    position = None
    for i, entry in enumerate(axes):
        if entry is Carry:
            if position is not None:
                raise PrefixError(
                    f"scan: {name} has Carry at positions {position} and {i}; there can be only "
                    "one carried argument/output. Fix: group the carried values in one tuple."
                )
            position = i
        else:
            _reject_nested_carry(entry, name, (i,))
    return position


def _reject_nested_carry(tree: Any, name: str, where: tuple[int, ...]) -> None:
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree, is_leaf=is_prefix_leaf):
        if leaf is Carry:
            raise PrefixError(
                f"scan: Carry must be a top-level entry of {name} (a whole argument), found it "
                f"nested at {name}{list(where)}{jax.tree_util.keystr(path)}. Fix: carry the "
                "whole argument, or use StateAxes({{...: Carry}}) for an object's state."
            )


def _check_out_axes(out_axes: Any) -> None:
    for path, leaf in jax.tree_util.tree_leaves_with_path(out_axes, is_leaf=is_prefix_leaf):
        where = f"out_axes{jax.tree_util.keystr(path)}"
        if leaf is None:
            raise PrefixError(
                f"scan: cannot broadcast an output (out_axes=None at {where}); scan outputs are "
                "stacked along the scanned axis. Fix: use an int axis, or return it through "
                "the carry."
            )
        if isinstance(leaf, StateAxes):
            for filt, value in leaf.items():
                if value is None or value is Carry:
                    raise PrefixError(
                        f"scan: {leaf!r} at {where} gives {value!r} to {filt!r}; output objects can "
                        "only be stacked (int axes). Fix: use an int axis for every filter."
                    )


def scan(
    f: Callable[..., Any] | Any = MISSING,
    *,
    length: int | None = None,
    reverse: bool = False,
    unroll: int | bool = 1,
    _split_transpose: bool = False,
    in_axes: int | None | type[Carry] | tuple[Any, ...] = (Carry, 0),
    out_axes: Any = (Carry, 0),
    transform_metadata: Mapping[str, Any] = FrozenDict({}),
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> Any:
    """``jax.lax.scan`` for functions of stateful objects.

    ``in_axes`` has one entry per argument: :class:`Carry` for the (single) carried
    argument, an int for arguments scanned along that axis, None for broadcast ones; at a
    graph node a :class:`StateAxes` splits its state. The function returns the new carry at
    the position of Carry in ``out_axes`` (default ``(Carry, 0)``: ``(carry, y)``) and the
    other outputs are stacked. Updates of scanned state come back stacked, updates of
    carried and broadcast object state are threaded through the iterations; broadcast
    arrays are constants.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from plait.core import Carry, Object, Param, scan, vmap
        >>> class Layer(Object):
        ...     def __init__(self, key):
        ...         self.w = Param(jax.random.normal(key, (3, 3)) * 0.1)
        >>> layers = vmap(Layer)(jax.random.split(jax.random.key(0), 5))
        >>> @scan(in_axes=(Carry, 0), out_axes=Carry)
        ... def forward(x, layer):
        ...     return jnp.tanh(x @ layer.w[...])
        >>> forward(jnp.ones(3), layers).shape
        (3,)
    """
    if f is MISSING:
        return functools.partial(
            scan, length=length, reverse=reverse, unroll=unroll, _split_transpose=_split_transpose,
            in_axes=in_axes, out_axes=out_axes, transform_metadata=transform_metadata,
            graph=graph, graph_updates=graph_updates,
        )
    in_axes = tuple(in_axes) if isinstance(in_axes, list) else in_axes
    out_axes = tuple(out_axes) if isinstance(out_axes, list) else out_axes
    in_carry = _carry_position(in_axes, "in_axes")
    out_carry = _carry_position(out_axes, "out_axes")
    if (in_carry is None) != (out_carry is None):
        raise PrefixError(
            f"scan: Carry appears in only one of in_axes={in_axes!r} and out_axes={out_axes!r}. "
            "Fix: mark the carried argument in in_axes and the returned carry in out_axes."
        )
    rest_axes: Any
    if out_carry == "all":
        rest_axes = 0
    elif isinstance(out_carry, int):
        rest_axes = tuple(0 if i == out_carry else a for i, a in enumerate(out_axes))
    else:
        rest_axes = out_axes
    _check_out_axes(rest_axes)
    graph_mode = resolve_graph_mode(graph)
    updates = resolve_graph_updates(graph_updates)
    bound_f = f
    f, bound_self = unbind(f)
    scan_in_axes = in_axes
    if bound_self is not None:  # a bound method's object is broadcast (its state threaded)
        if in_axes is Carry or not isinstance(in_axes, tuple):
            raise TransformError(
                "scan: a bound method needs in_axes as a tuple (one entry per explicit "
                "argument). Fix: pass in_axes=(Carry, 0, ...) or scan type(obj).method."
            )
        scan_in_axes = shift_prefix(in_axes, None)
        in_carry_shifted = None if in_carry is None else in_carry + 1  # type: ignore[operator]
    else:
        in_carry_shifted = in_carry

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        args = resolve_kwargs(bound_f, args, kwargs)
        if bound_self is not None:
            args = (bound_self, *args)
        if in_axes is Carry and len(args) != 1:
            raise TransformError(
                f"scan: in_axes=Carry means the function takes exactly one (carried) argument, "
                f"but it got {len(args)}. Fix: use in_axes=(Carry, 0, ...)."
            )
        carry_arg = 0 if in_carry == "all" else in_carry_shifted
        lifted = lift(args, {}, prefix=scan_in_axes, graph=graph_mode, graph_updates=updates,
                      transform="scan", prefix_name="in_axes")
        return _run_scan(lifted, args, carry_arg, out_carry, rest_axes)

    def _run_scan(lifted: Lifted, args: tuple[Any, ...], carry_arg: int | None, out_carry: Any, rest_axes: Any) -> Any:
        sk = lifted.skeleton
        carry_vars, bcast_vars, scan_vars = [], [], []
        for j, spec in enumerate(lifted.var_specs):
            if spec is Carry:
                carry_vars.append(j)
            elif spec is None:
                bcast_vars.append(j)
            elif isinstance(spec, int):
                scan_vars.append(j)
            else:
                raise PrefixError(f"scan: invalid axis {spec!r} for {lifted.var_where(j)}; use an int, None or Carry.")
        carry_leaves, bcast_leaves, scan_leaves = [], [], []
        for j, spec in enumerate(lifted.leaf_specs):
            if spec is Carry:
                carry_leaves.append(j)
            elif spec is None:
                bcast_leaves.append(j)
            elif isinstance(spec, int):
                scan_leaves.append(j)
            else:
                raise PrefixError(f"scan: invalid axis {spec!r} in in_axes; use an int, None or Carry.")
        values = lifted.values()
        leaves = lifted.leaves
        var_axes = lifted.var_specs
        leaf_axes = lifted.leaf_specs
        init = (
            [values[j] for j in carry_vars],
            [leaves[j] for j in carry_leaves],
            [values[j] for j in bcast_vars],
        )
        xs = (
            [jnp.moveaxis(values[j], var_axes[j], 0) for j in scan_vars],
            [jnp.moveaxis(leaves[j], leaf_axes[j], 0) for j in scan_leaves],
        )
        constants = [leaves[j] for j in bcast_leaves]
        n_vars, n_leaves = len(values), len(leaves)
        carry_tree = None
        if carry_arg is not None:
            carry_tree = jax.tree_util.tree_structure(args[carry_arg], is_leaf=_is_lift_leaf)

        def body(carry: Any, x: Any) -> Any:
            cv, cl, bv = carry
            sv, sl = x
            var_values: list[Any] = [None] * n_vars
            leaf_values: list[Any] = [None] * n_leaves
            for j, v in zip(carry_vars, cv, strict=False):
                var_values[j] = v
            for j, v in zip(bcast_vars, bv, strict=False):
                var_values[j] = v
            for j, v in zip(scan_vars, sv, strict=False):
                var_values[j] = v
            for j, v in zip(carry_leaves, cl, strict=False):
                leaf_values[j] = v
            for j, v in zip(bcast_leaves, constants, strict=False):
                leaf_values[j] = v
            for j, v in zip(scan_leaves, sl, strict=False):
                leaf_values[j] = v
            call = sk.enter(var_values, leaf_values)
            inner_scanned = []
            if transform_metadata:
                inner_scanned = [
                    (call.index_ref[sk.leaf_indices[j]], var_axes[j]) for j in scan_vars if sk.leaf_indices[j] >= 0
                ]
                for var, axis in inner_scanned:
                    remove_axis([var], axis, transform_metadata)
            out = f(*call.args, **call.kwargs)
            if out_carry == "all":
                carry_out, rest = out, None
            elif isinstance(out_carry, int):
                if not isinstance(out, tuple) or len(out) <= out_carry:
                    raise TransformError(
                        f"scan: out_axes={out_axes!r} expects the function to return a tuple with the "
                        f"carry at position {out_carry}, got {type(out).__name__}."
                    )
                carry_out = out[out_carry]
                rest = tuple(None if i == out_carry else o for i, o in enumerate(out))
            else:
                carry_out, rest = None, out
            new_carry_leaves = []
            if carry_arg is not None:
                new_carry_leaves = _check_carry(call.args[carry_arg], carry_out, carry_tree)
            if transform_metadata:
                for var, axis in inner_scanned:
                    add_axis([var], axis, transform_metadata)
                for var, spec in _new_output_variables(call, rest, rest_axes, "scan", "out_axes"):
                    if isinstance(spec, int):
                        add_axis([var], spec, transform_metadata)
            out_prefixes = broadcast_out_prefix(rest_axes, rest, transform="scan", name="out_axes")
            in_values, out_values, out_leaves, info, _, out_flat = call.exit(rest)
            if info.in_graphdef is not None:
                raise CarryError(
                    LOOP_STRUCTURE.format(
                        transform="scan", what="structure of the objects passed in",
                        before=sk.graphdef, after=info.in_graphdef,
                    )
                )
            if any(r >= 0 for r in info.out_root_refs):
                raise TransformError(
                    "scan: the function returned one of its input objects as a scanned output; "
                    "objects can only come back through the carry. Fix: return it at the Carry "
                    "position of out_axes, or return its arrays."
                )
            root_prefixes = [out_prefixes[s] for s in info.out_node_slots]
            out_var_axes = tuple(
                resolve_spec(root_prefixes[p[0]], p[1:], v, transform="scan", where="output")
                for p, v in zip(out_flat.paths, out_flat.leaves, strict=False)
            ) if out_values else ()
            out_leaf_axes = tuple(out_prefixes[s] for s in info.out_leaf_slots)
            new_carry = (
                [in_values[j] for j in carry_vars],
                new_carry_leaves,
                [in_values[j] for j in bcast_vars],
            )
            ys = (
                [in_values[j] for j in scan_vars],
                out_values,
                out_leaves,
                StaticBox((info, out_var_axes, out_leaf_axes)),
            )
            return new_carry, ys

        final, ys = jax.lax.scan(
            body, init, xs, length=length, reverse=reverse, unroll=unroll, _split_transpose=_split_transpose
        )
        cv, cl, bv = final
        sv, out_values, out_leaves, box = ys
        info, out_var_axes, out_leaf_axes = box.value
        in_values: list[Any] = [None] * n_vars
        for j, v in zip(carry_vars, cv, strict=False):
            in_values[j] = v
        for j, v in zip(bcast_vars, bv, strict=False):
            in_values[j] = v
        for j, v in zip(scan_vars, sv, strict=False):
            in_values[j] = jnp.moveaxis(v, 0, var_axes[j])
        out_values = [jnp.moveaxis(v, 0, a) for v, a in zip(out_values, out_var_axes, strict=False)]
        out_leaves = [jnp.moveaxis(v, 0, a) for v, a in zip(out_leaves, out_leaf_axes, strict=False)]
        rest_out = lifted.apply(info, in_values, out_values, out_leaves)
        if carry_arg is None:
            return rest_out
        carry_value = lifted.rebuild_arg(args, carry_arg, cl)
        if out_carry == "all":
            return carry_value
        return tuple(carry_value if i == out_carry else o for i, o in enumerate(rest_out))

    return wraps(bound_f, wrapper)


def _is_lift_leaf(x: Any) -> bool:
    from .._lift import is_lift_leaf

    return is_lift_leaf(x)


def _check_carry(carry_in: Any, carry_out: Any, carry_tree: Any) -> list[Any]:
    """The carried argument must come back with the same structure and the same objects."""
    in_leaves, in_tree = jax.tree_util.tree_flatten(carry_in, is_leaf=_is_lift_leaf)
    out_leaves, out_tree = jax.tree_util.tree_flatten(carry_out, is_leaf=_is_lift_leaf)
    if in_tree != out_tree:
        raise CarryError(
            LOOP_STRUCTURE.format(transform="scan", what="carry", before=in_tree, after=out_tree)
        )
    new_leaves = []
    for i, (a, b) in enumerate(zip(in_leaves, out_leaves, strict=False)):
        if _is_lift_leaf(a) or _is_lift_leaf(b):
            if a is not b:
                from ._errors import CARRY_IDENTITY

                raise CarryError(
                    CARRY_IDENTITY.format(
                        transform="scan", path=f"leaf {i} of the carry",
                        before=type(a).__name__, after=type(b).__name__,
                    )
                )
        else:
            new_leaves.append(b)
    return new_leaves
