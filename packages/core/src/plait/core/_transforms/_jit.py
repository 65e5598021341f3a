"""``jit``, ``jit_partial`` and ``cached_partial``: compilation with state write-back and a fast path.

The fast path. A call is keyed by the structure of its arguments (the JAX treedef with graph
nodes as leaves), the identity of the graph nodes passed, the static arguments, and the
global structure epoch (:func:`plait.core.structure_epoch`). A hit costs: one flatten of the
argument tuple (not of the object graph), reading each Variable's raw value, one call of a
cached ``jax.jit`` function over flat lists of arrays, and one slot store per Variable. The
plan of a key (GraphDef, ordered outer Variables, compiled function) is built on a miss by
flattening the objects once; plans of older epochs can never match again and are dropped.

Two shortcuts find a plan without asking, node by node, whether something is a graph node:
calls whose arguments are themselves nodes, Variables or arrays (``step(model, opt, x)``)
are keyed by position, and calls on plain pytrees of arrays (no object anywhere, as Linen's
``nn.jit`` makes them) by their JAX treedef from JAX's own C++ flatten.
"""

from __future__ import annotations

import collections
import functools
import operator
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, ParamSpec, TypeVar

import jax
import numpy as np

from .._lift import (
    Lifted,
    StateSharding,
    StaticBox,
    broadcast_out_prefix,
    is_lift_leaf,
    lift,
    read_raw,
    resolve_graph_mode,
    resolve_graph_updates,
    resolve_spec,
    write_raw,
)
from .._object import Object, structure_epoch
from .._variable import Variable
from ._common import (
    MISSING,
    normalize_argnames,
    normalize_argnums,
    shift_prefix,
    signature_of,
    unbind,
)
from ._errors import TransformError

P = ParamSpec("P")
R = TypeVar("R")

__all__ = ["jit", "jit_partial", "cached_partial", "JitWrapped", "StateSharding"]


class _Entry:
    """A compiled pure function for one argument skeleton (shared by equal skeletons)."""

    __slots__ = ("jitted", "split_vars", "split_leaves", "donating")

    def __init__(self, jitted: Any, split_vars: Any, split_leaves: Any, donating: bool):
        self.jitted = jitted
        self.split_vars = split_vars
        self.split_leaves = split_leaves
        self.donating = donating


class _Plan:
    """Everything a repeated call on the same objects needs (see the module docstring)."""

    __slots__ = ("lifted", "entry", "variables", "all_variables", "leaf_getter")

    def __init__(self, lifted: Lifted, entry: _Entry, leaf_slots: Sequence[int]):
        self.lifted = lifted
        self.entry = entry
        self.variables = lifted.variables
        self.all_variables = lifted.all_variables
        self.leaf_getter = _getter(leaf_slots)

    def arrays(self, flat: list[Any]) -> tuple[Any, ...]:
        """The positional arguments of the compiled function for this call."""
        if self.all_variables:
            values = list(map(read_raw, self.variables))
        else:
            values = self.lifted.values()
        leaves = self.leaf_getter(flat)
        entry = self.entry
        if entry.donating:
            dv, kv = entry.split_vars(values)
            dl, kl = entry.split_leaves(leaves)
            return dv, kv, dl, kl
        return values, leaves

    def finish(self, outputs: Any) -> Any:
        in_values, out_values, out_leaves, box = outputs
        info = box.value
        lifted = self.lifted
        if info.in_graphdef is None and self.all_variables:
            _consume(map(write_raw, self.variables, in_values))  # one C-level loop
            after = None
        else:
            after = lifted.write_back(info, in_values)
        if not info.out_node_slots and not info.out_static:
            return jax.tree_util.tree_unflatten(info.out_treedef, out_leaves)
        return lifted.build_output(info, out_values, out_leaves, after)


_NODE, _ARRAY = "node", "array"
# Argument kinds by exact type, for the types whose kind cannot change: Variables and
# Objects are always graph leaves of the engine, jax.Arrays always pytree leaves. Other
# types are asked each time (a node type may be registered later).
_ARG_KINDS: dict[type, str] = {}


def _positional_key(args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """Plan key of a call whose arguments are all graph nodes, Variables or arrays.

    Graph nodes and Variables count by identity (as in the general key), arrays by
    position only; ``None`` when some argument is anything else (a container, a scalar),
    which then goes through the general key.
    """
    key = []
    for arg in args:
        kind = _ARG_KINDS.get(type(arg))
        if kind is None:
            kind = _arg_kind(arg)
            if kind is None:
                return None
        key.append(id(arg) if kind is _NODE else None)
    return tuple(key)


def _arg_kind(arg: Any) -> str | None:
    typ = type(arg)
    if issubclass(typ, (Variable, Object)):
        _ARG_KINDS[typ] = _NODE
        return _NODE
    if isinstance(arg, jax.Array) and not is_lift_leaf(arg):
        if typ.__module__.startswith(("jax", "jaxlib")):
            _ARG_KINDS[typ] = _ARRAY
        return _ARRAY
    if is_lift_leaf(arg):
        return _NODE
    return None


# Host leaf types that can never be graph nodes or Variables (whatever is registered later);
# JAX arrays are recognised by _arg_kind, as for the positional key.
_HOST_LEAF_TYPES = frozenset({np.ndarray, bool, int, float, complex})


def _all_pure_leaves(leaves: Sequence[Any]) -> bool:
    for leaf in leaves:
        typ = type(leaf)
        if typ not in _HOST_LEAF_TYPES and (_ARG_KINDS.get(typ) or _arg_kind(leaf)) is not _ARRAY:
            return False
    return True


def _consume(iterator: Any) -> None:
    """Runs an iterator to exhaustion without keeping its items."""
    collections.deque(iterator, maxlen=0)


def _getter(positions: Sequence[int]) -> Callable[[Sequence[Any]], list[Any]]:
    positions = tuple(positions)
    if not positions:
        return lambda xs: []
    if len(positions) == 1:
        p = positions[0]
        return lambda xs: [xs[p]]
    get = operator.itemgetter(*positions)
    return lambda xs: list(get(xs))


def _splitter(mask: Sequence[bool]) -> Callable[[list[Any]], tuple[list[Any], list[Any]]]:
    on = _getter([i for i, m in enumerate(mask) if m])
    off = _getter([i for i, m in enumerate(mask) if not m])
    return lambda xs: (on(xs), off(xs))


def _merger(mask: Sequence[bool]) -> Callable[[list[Any], list[Any]], list[Any]]:
    mask = tuple(mask)

    def merge(on: list[Any], off: list[Any]) -> list[Any]:
        it_on, it_off = iter(on), iter(off)
        return [next(it_on) if m else next(it_off) for m in mask]

    return merge


class JitWrapped(Generic[P, R]):
    """A function compiled with :func:`jit`; also has ``lower``, ``trace`` and ``eval_shape``."""

    def __init__(
        self,
        fun: Callable[P, R],
        in_shardings: Any,
        out_shardings: Any,
        static_argnums: int | Sequence[int] | None = None,
        static_argnames: str | Iterable[str] | None = None,
        donate_argnums: int | Sequence[int] | None = None,
        donate_argnames: str | Iterable[str] | None = None,
        keep_unused: bool = False,
        device: Any = None,
        backend: str | None = None,
        inline: bool = False,
        graph: bool | None = None,
        graph_updates: bool | None = None,
        partial_args: tuple[Any, ...] = (),
    ):
        functools.update_wrapper(self, fun, updated=())
        fun, bound_self = unbind(fun)
        self.fun = fun
        self.in_shardings = in_shardings
        self.out_shardings = out_shardings
        self.static_argnums = normalize_argnums(static_argnums)
        self.static_argnames = normalize_argnames(static_argnames)
        self.donate_argnums = normalize_argnums(donate_argnums)
        self.donate_argnames = normalize_argnames(donate_argnames)
        if bound_self is not None:
            # A bound method of an object: the object becomes an explicit first argument
            # (lifted like the others); the user's positions do not count it.
            partial_args = (bound_self, *partial_args)
            self.static_argnums = tuple(i + 1 if i >= 0 else i for i in self.static_argnums)
            self.donate_argnums = tuple(i + 1 if i >= 0 else i for i in self.donate_argnums)
            self.in_shardings = shift_prefix(in_shardings, None)
        self.keep_unused = keep_unused
        self.device = device
        self.backend = backend
        self.inline = inline
        self.graph = resolve_graph_mode(graph)
        self.graph_updates = resolve_graph_updates(graph_updates)
        self.partial_args = tuple(partial_args)
        self._infer_names()
        self._plans: dict[Any, _Plan] = {}
        self._fast_plans: dict[tuple[Any, ...], _Plan] = {}
        self._pure_plans: dict[Any, _Plan] = {}
        self._static_splits: dict[int, tuple[tuple[int, ...], Callable, Callable]] = {}
        self._has_static = bool(self.static_argnums or self.static_argnames)
        self._plans_epoch = -1
        self._entries: dict[Any, _Entry] = {}

    # -- argument handling ------------------------------------------------------------------

    def _infer_names(self) -> None:
        """Like jax.jit: static/donated names and positions imply each other."""
        sig = signature_of(self.fun)
        if sig is None:
            return
        params = list(sig.parameters.values())
        positional = [
            p.name for p in params
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        # Positions count every positional argument, the partial ones included.
        def names_for(nums: tuple[int, ...]) -> tuple[str, ...]:
            return tuple(positional[n] for n in nums if 0 <= n < len(positional))

        def nums_for(names: tuple[str, ...]) -> tuple[int, ...]:
            return tuple(positional.index(name) for name in names if name in positional)

        self.static_argnames = tuple(dict.fromkeys(self.static_argnames + names_for(self.static_argnums)))
        self.static_argnums = tuple(dict.fromkeys(self.static_argnums + nums_for(self.static_argnames)))
        self.donate_argnames = tuple(dict.fromkeys(self.donate_argnames + names_for(self.donate_argnums)))
        self.donate_argnums = tuple(dict.fromkeys(self.donate_argnums + nums_for(self.donate_argnames)))

    def _static_positions(self, n: int) -> tuple[tuple[int, ...], Callable, Callable]:
        """For ``n`` positional arguments: static positions, and getters of both parts."""
        split = self._static_splits.get(n)
        if split is None:
            static_pos = tuple(sorted({i % n for i in self.static_argnums if -n <= i < n}))
            dynamic = [i for i in range(n) if i not in static_pos]
            split = self._static_splits[n] = (static_pos, _getter(dynamic), _getter(static_pos))
        return split

    def _split_static(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        static_pos, dynamic_of, static_of = self._static_positions(len(args))
        if not static_pos and not self.static_argnames:
            return args, kwargs, (), ()
        dyn_args = tuple(dynamic_of(args))
        static_vals = tuple(static_of(args))
        static_kw = tuple((k, kwargs[k]) for k in self.static_argnames if k in kwargs)
        if static_kw:
            kwargs = {k: v for k, v in kwargs.items() if k not in self.static_argnames}
        try:
            hash((static_vals, static_kw))
        except TypeError:
            raise TransformError(
                f"jit: static arguments must be hashable, got "
                f"{[type(v).__name__ for v in static_vals + tuple(v for _, v in static_kw)]} for "
                f"static_argnums={self.static_argnums} / static_argnames={self.static_argnames}.\n"
                "Fix: pass hashable values (tuples instead of lists), or make the argument dynamic."
            ) from None
        return dyn_args, kwargs, tuple(static_pos), (static_vals, static_kw)

    # -- calling ----------------------------------------------------------------------------

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        if obj is None:
            return self
        return functools.partial(self, obj)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if self.partial_args:
            args = self.partial_args + args  # type: ignore[assignment]
        epoch = structure_epoch()
        if epoch != self._plans_epoch:
            self._drop_plans(epoch)
        # Fastest key: only positional graph nodes / Variables / arrays and nothing static
        # (``step(model, optimizer, x, y)``): the arguments are their own flat list, so no
        # pytree flatten is needed to find the plan.
        fast_key = None if kwargs or self._has_static else _positional_key(args)
        if fast_key is not None:
            plan = self._fast_plans.get(fast_key)
            if plan is not None:
                return self._run(plan, args, epoch)
        dyn_args, dyn_kwargs, static_pos, static_key = self._split_static(args, kwargs)
        if fast_key is None and self._pure_plans:
            # Pytrees of arrays only: JAX's flatten (C++, no per-node question) is the key.
            # Only functions that were called that way pay for it: objects are JAX pytrees
            # too, and this flatten would walk their whole graph.
            pure_flat, pure_treedef = jax.tree_util.tree_flatten((dyn_args, dyn_kwargs))
            plan = self._pure_plans.get((pure_treedef, static_key))
            if plan is not None and _all_pure_leaves(pure_flat):
                return self._run(plan, pure_flat, epoch)
        flat, treedef = jax.tree_util.tree_flatten((dyn_args, dyn_kwargs), is_leaf=is_lift_leaf)
        nodes = tuple([id(x) for x in flat if is_lift_leaf(x)])
        key = (treedef, nodes, static_key)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._build_plan(dyn_args, dyn_kwargs, len(args), static_pos, static_key)
            epoch = structure_epoch()  # building may not change structure, but be exact
            if epoch != self._plans_epoch:
                self._drop_plans(epoch)
            self._plans[key] = plan
        if fast_key is not None:
            self._fast_plans[fast_key] = plan  # flat == list(args) for such calls
        elif not nodes and _all_pure_leaves(flat):
            # No nodes: is_leaf never fired, so JAX's plain flatten gives this treedef and list.
            self._pure_plans[(treedef, static_key)] = plan
        return self._run(plan, flat, epoch)

    def _drop_plans(self, epoch: int) -> None:
        """Forgets every plan: the object structure changed (a new structure epoch)."""
        self._plans.clear()
        self._fast_plans.clear()
        self._pure_plans.clear()
        self._plans_epoch = epoch

    def _run(self, plan: _Plan, flat: Sequence[Any], epoch: int) -> Any:
        outputs = plan.entry.jitted(*plan.arrays(flat))
        out = plan.finish(outputs)
        if structure_epoch() != epoch:
            info = outputs[3].value
            if info.in_graphdef is None and (plan.all_variables or info.values_only):
                # The epoch moved only because objects were created inside the trace or for
                # the output; the inputs were updated value by value, so plans stay valid.
                self._plans_epoch = structure_epoch()
        return out

    def _build_plan(self, dyn_args: tuple[Any, ...], dyn_kwargs: dict[str, Any], n_args: int,
                    static_pos: tuple[int, ...], static_key: Any) -> _Plan:
        in_prefix = self._dyn_prefix(self.in_shardings, n_args, static_pos, "in_shardings")
        lifted = lift(
            dyn_args,
            dyn_kwargs,
            prefix=in_prefix,
            kwargs_prefix=None,
            graph=self.graph,
            graph_updates=self.graph_updates,
            transform="jit",
            prefix_name="in_shardings",
        )
        donate = self._donation_mask(lifted, dyn_args, dyn_kwargs, n_args, static_pos)
        entry_key = (lifted.skeleton.key(), static_key, donate)
        entry = self._entries.get(entry_key)
        if entry is None:
            entry = self._make_entry(lifted, static_pos, static_key, donate)
            self._entries[entry_key] = entry
        return _Plan(lifted, entry, lifted.skeleton.leaf_slots)

    def _dyn_prefix(self, prefix: Any, n_args: int, static_pos: tuple[int, ...], name: str) -> Any:
        """The prefix over the dynamic arguments only (static positions removed)."""
        if isinstance(prefix, (tuple, list)) and not isinstance(prefix, StateSharding):
            entries = list(prefix)
            if len(entries) != n_args:
                from .._transforms._errors import PREFIX_MISMATCH, PrefixError

                raise PrefixError(
                    PREFIX_MISMATCH.format(
                        transform="jit",
                        name=name,
                        prefix=prefix,
                        what="positional arguments",
                        detail=f"It has {len(entries)} entries but the function got {n_args} "
                        "positional arguments (static ones included).",
                    )
                )
            return tuple(p for i, p in enumerate(entries) if i not in set(static_pos))
        return prefix

    def _donation_mask(self, lifted: Lifted, dyn_args: tuple[Any, ...], dyn_kwargs: dict[str, Any],
                       n_args: int, static_pos: tuple[int, ...]) -> tuple[tuple[bool, ...], tuple[bool, ...]] | None:
        if not self.donate_argnums and not self.donate_argnames:
            return None
        # Map donated original positions to dynamic positions.
        static_set = set(static_pos)
        dyn_index = {}
        j = 0
        for i in range(n_args):
            if i not in static_set:
                dyn_index[i] = j
                j += 1
        donated_dyn = {dyn_index[i % n_args] for i in self.donate_argnums if -n_args <= i < n_args and (i % n_args) in dyn_index}
        donated_kw = set(self.donate_argnames)
        per_leaf = []
        for i, arg in enumerate(dyn_args):
            count = len(jax.tree_util.tree_leaves(arg, is_leaf=is_lift_leaf))
            per_leaf.extend([i in donated_dyn] * count)
        for k in sorted(dyn_kwargs):
            count = len(jax.tree_util.tree_leaves(dyn_kwargs[k], is_leaf=is_lift_leaf))
            per_leaf.extend([k in donated_kw] * count)
        sk = lifted.skeleton
        root_donated = [per_leaf[s] for s in sk.node_slots]
        var_mask = tuple(root_donated[path[0]] for path in lifted.var_paths)
        leaf_mask = tuple(per_leaf[s] for s in sk.leaf_slots)
        if not any(var_mask) and not any(leaf_mask):
            return None
        return var_mask, leaf_mask

    def _make_entry(self, lifted: Lifted, static_pos: tuple[int, ...], static_key: Any,
                    donate: tuple[tuple[bool, ...], tuple[bool, ...]] | None) -> _Entry:
        skeleton = lifted.skeleton
        fun = self.fun
        static_vals, static_kw = static_key if static_key else ((), ())
        out_shardings = self.out_shardings
        var_shardings = [
            s if s is not None and _is_sharding(s) else None for s in lifted.var_specs
        ]
        leaf_shardings = [s if _is_sharding(s) else None for s in lifted.leaf_specs]

        def call_user(var_values: list[Any], leaf_values: list[Any]) -> Any:
            call = skeleton.enter(var_values, leaf_values)
            args, kwargs = call.args, call.kwargs
            if static_pos:
                full = list(args)
                for pos, value in zip(static_pos, static_vals, strict=False):
                    full.insert(pos, value)
                args = tuple(full)
            if static_kw:
                kwargs = {**kwargs, **dict(static_kw)}
            out = fun(*args, **kwargs)
            in_values, out_values, out_leaves, info, _, out_flat = call.exit(out)
            if out_shardings is not None:
                out_values, out_leaves = _constrain_outputs(out, info, out_flat, out_values, out_leaves, out_shardings)
            if info.in_graphdef is None and any(s is not None for s in var_shardings):
                in_values = [
                    jax.lax.with_sharding_constraint(x, s) if s is not None else x
                    for x, s in zip(in_values, var_shardings, strict=False)
                ]
            return in_values, out_values, out_leaves, StaticBox(info)

        jit_kwargs: dict[str, Any] = dict(keep_unused=self.keep_unused, inline=self.inline)
        if self.device is not None:
            jit_kwargs["device"] = self.device
        if self.backend is not None:
            jit_kwargs["backend"] = self.backend
        has_in_shardings = any(s is not None for s in var_shardings + leaf_shardings)
        if donate is None:
            def pure(var_values: list[Any], leaf_values: list[Any]) -> Any:
                return call_user(var_values, leaf_values)

            if has_in_shardings:
                jit_kwargs["in_shardings"] = (var_shardings, leaf_shardings)
            jitted = jax.jit(pure, **jit_kwargs)
            return _Entry(jitted, None, None, False)
        var_mask, leaf_mask = donate
        merge_vars = _merger(var_mask)
        merge_leaves = _merger(leaf_mask)
        split_vars = _splitter(var_mask)
        split_leaves = _splitter(leaf_mask)

        def pure_donating(dv: list[Any], kv: list[Any], dl: list[Any], kl: list[Any]) -> Any:
            return call_user(merge_vars(dv, kv), merge_leaves(dl, kl))

        if has_in_shardings:
            sv, kv_ = split_vars(var_shardings)
            sl, kl_ = split_leaves(leaf_shardings)
            jit_kwargs["in_shardings"] = (sv, kv_, sl, kl_)
        jitted = jax.jit(pure_donating, donate_argnums=(0, 2), **jit_kwargs)
        return _Entry(jitted, split_vars, split_leaves, True)

    # -- staging ------------------------------------------------------------------------------

    def _plan_for(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[_Plan, list[Any]]:
        if self.partial_args:
            args = self.partial_args + args
        dyn_args, dyn_kwargs, static_pos, static_key = self._split_static(args, kwargs)
        flat, _ = jax.tree_util.tree_flatten((dyn_args, dyn_kwargs), is_leaf=is_lift_leaf)
        return self._build_plan(dyn_args, dyn_kwargs, len(args), static_pos, static_key), flat

    def lower(self, *args: Any, **kwargs: Any) -> Lowered:
        """Lowers for these arguments; ``.compile()`` gives a callable with write-back."""
        plan, flat = self._plan_for(args, kwargs)
        return Lowered(plan.entry.jitted.lower(*plan.arrays(flat)), self)

    def trace(self, *args: Any, **kwargs: Any) -> Traced:
        """Traces for these arguments (``.jaxpr``, ``.lower()``)."""
        plan, flat = self._plan_for(args, kwargs)
        return Traced(plan.entry.jitted.trace(*plan.arrays(flat)), self)

    def eval_shape(self, *args: Any, **kwargs: Any) -> Any:
        """The output's shapes and dtypes (``jax.ShapeDtypeStruct``); the inputs are untouched."""
        plan, flat = self._plan_for(args, kwargs)
        outputs = jax.eval_shape(plan.entry.jitted, *plan.arrays(flat))
        in_values, out_values, out_leaves, box = outputs
        return plan.lifted.build_output(box.value, out_values, out_leaves, None)


def _is_sharding(x: Any) -> bool:
    return isinstance(x, jax.sharding.Sharding)


def _constrain_outputs(out: Any, info: Any, out_flat: Any, out_values: list[Any], out_leaves: list[Any],
                       out_shardings: Any) -> tuple[list[Any], list[Any]]:
    """Applies ``out_shardings`` (a prefix of the output) as sharding constraints."""
    prefixes = broadcast_out_prefix(out_shardings, out, transform="jit", name="out_shardings")
    leaf_prefixes = [prefixes[s] for s in info.out_leaf_slots]
    out_leaves = [
        jax.lax.with_sharding_constraint(x, p) if _is_sharding(p) else x
        for x, p in zip(out_leaves, leaf_prefixes, strict=False)
    ]
    if out_flat is not None and out_values:
        root_prefixes = [prefixes[s] for s in info.out_node_slots]
        constrained = []
        for x, path, var in zip(out_values, out_flat.paths, out_flat.leaves, strict=False):
            p = resolve_spec(root_prefixes[path[0]], path[1:], var, transform="jit", where="output")
            constrained.append(jax.lax.with_sharding_constraint(x, p) if _is_sharding(p) else x)
        out_values = constrained
    return out_values, out_leaves


class _Stage:
    """Wraps a jax stage object; unknown attributes are forwarded to it."""

    def __init__(self, stage: Any, jit_wrapped: JitWrapped[Any, Any]):
        self._stage = stage
        self._jit_wrapped = jit_wrapped

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stage, name)


class Traced(_Stage):
    """The traced form of a :class:`JitWrapped` call."""

    def lower(self, **kwargs: Any) -> Lowered:
        return Lowered(self._stage.lower(**kwargs), self._jit_wrapped)


class Lowered(_Stage):
    """The lowered form of a :class:`JitWrapped` call."""

    def compile(self, compiler_options: Any = None) -> Compiled:
        if compiler_options is None:
            return Compiled(self._stage.compile(), self._jit_wrapped)
        return Compiled(self._stage.compile(compiler_options), self._jit_wrapped)

    def as_text(self, dialect: str | None = None, **kwargs: Any) -> str:
        return self._stage.as_text(dialect, **kwargs)  # type: ignore[no-any-return]


class Compiled(_Stage):
    """A compiled :class:`JitWrapped` call: call it with the original kind of arguments."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        plan, flat = self._jit_wrapped._plan_for(args, kwargs)
        return plan.finish(self._stage(*plan.arrays(flat)))


def jit(
    fun: Callable[P, R] | Any = MISSING,
    *,
    in_shardings: Any = None,
    out_shardings: Any = None,
    static_argnums: int | Sequence[int] | None = None,
    static_argnames: str | Iterable[str] | None = None,
    donate_argnums: int | Sequence[int] | None = None,
    donate_argnames: str | Iterable[str] | None = None,
    keep_unused: bool = False,
    device: Any = None,
    backend: str | None = None,
    inline: bool = False,
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> Any:
    """``jax.jit`` for functions of stateful objects: updates inside are written back.

    Graph nodes (Objects such as nnx Modules) may appear anywhere in the arguments and in
    the output. Variable updates and structural changes made inside are applied to the
    original objects; an input object returned by the function comes back as the same
    Python object; shared references across arguments stay shared. A repeated call on the
    same objects with unchanged structure takes a fast path (see the module docstring).

    Args:
        fun: the function (or omit it to use ``jit(...)`` as a decorator factory).
        in_shardings: prefix over the positional arguments; at a graph node it may be a
            sharding for all its state or a :class:`StateSharding`.
        out_shardings: prefix over the output (applied as sharding constraints).
        static_argnums / static_argnames: static (hashable, non-traced) arguments.
        donate_argnums / donate_argnames: arguments whose buffers (state included) may be
            reused for the outputs.
        keep_unused, device, backend, inline: as in ``jax.jit``.
        graph: graph mode (default) or tree mode (``False``: objects as pytrees).
        graph_updates: propagate structural changes made inside (default True).

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.core import Object, Variable, jit
        >>> class Counter(Object):
        ...     def __init__(self):
        ...         self.count = Variable(jnp.array(0))
        >>> @jit
        ... def step(counter, x):
        ...     counter.count[...] += 1
        ...     return x * 2
        >>> c = Counter()
        >>> step(c, jnp.ones(2)).tolist(), int(c.count[...])
        ([2.0, 2.0], 1)
        >>> _ = step(c, jnp.ones(2)); int(c.count[...])
        2
    """
    if fun is MISSING:
        return functools.partial(
            jit,
            in_shardings=in_shardings,
            out_shardings=out_shardings,
            static_argnums=static_argnums,
            static_argnames=static_argnames,
            donate_argnums=donate_argnums,
            donate_argnames=donate_argnames,
            keep_unused=keep_unused,
            device=device,
            backend=backend,
            inline=inline,
            graph=graph,
            graph_updates=graph_updates,
        )
    return JitWrapped(
        fun,
        in_shardings,
        out_shardings,
        static_argnums,
        static_argnames,
        donate_argnums,
        donate_argnames,
        keep_unused,
        device,
        backend,
        inline,
        graph,
        graph_updates,
    )


def jit_partial(
    fun: Callable[..., R],
    *partial_args: Any,
    in_shardings: Any = None,
    out_shardings: Any = None,
    static_argnums: int | Sequence[int] | None = None,
    static_argnames: str | Iterable[str] | None = None,
    donate_argnums: int | Sequence[int] | None = None,
    donate_argnames: str | Iterable[str] | None = None,
    keep_unused: bool = False,
    device: Any = None,
    backend: str | None = None,
    inline: bool = False,
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> JitWrapped[..., R]:
    """:func:`jit` with the first arguments fixed (e.g. the model and the optimizer).

    Argument positions in ``in_shardings`` / ``static_argnums`` / ``donate_argnums`` count
    the partial arguments too. The engine's plan cache makes repeated calls on the same
    partial objects as cheap as a plain ``jax.jit`` call.

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.core import Object, Variable, jit_partial
        >>> class Acc(Object):
        ...     def __init__(self):
        ...         self.total = Variable(jnp.array(0.0))
        >>> acc = Acc()
        >>> def add(acc, x):
        ...     acc.total[...] += x
        >>> add_to_acc = jit_partial(add, acc)
        >>> add_to_acc(1.0); add_to_acc(2.0); float(acc.total[...])
        3.0
    """
    return JitWrapped(
        fun,
        in_shardings,
        out_shardings,
        static_argnums,
        static_argnames,
        donate_argnums,
        donate_argnames,
        keep_unused,
        device,
        backend,
        inline,
        graph,
        graph_updates,
        partial_args=partial_args,
    )


class cached_partial:  # noqa: N801 - Flax's name
    """Partially applies graph-node arguments to a transformed function.

    ``f`` is usually a :func:`jit`-ed function. plait's transforms already cache the
    traversal of the objects they are called with (keyed by identity and the structure
    epoch), so this is a plain partial application kept for Flax compatibility.

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.core import Object, Variable, jit, cached_partial
        >>> class Acc(Object):
        ...     def __init__(self):
        ...         self.total = Variable(jnp.array(0.0))
        >>> acc = Acc()
        >>> @jit
        ... def add(acc, x):
        ...     acc.total[...] += x
        >>> add_to_acc = cached_partial(add, acc)
        >>> add_to_acc(1.0); float(acc.total[...])
        1.0
    """

    def __init__(self, f: Callable[..., Any], *cached_args: Any, graph: bool | None = None,
                 graph_updates: bool | None = None):
        functools.update_wrapper(self, f, updated=())
        self.f = f
        self.cached_args = cached_args

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.f(*self.cached_args, *args, **kwargs)

