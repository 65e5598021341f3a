"""The lifting engine: run a JAX transform of pure functions on functions of stateful objects.

Every lifted transform (``jit``, ``grad``, ``vmap``, ``scan``, ``cond``, ...) is the same four
steps, in the spirit of Equinox's partition -> transform -> combine:

1. :func:`lift` (outside the JAX transform) finds the graph nodes (Objects, registered node
   types) and Variables anywhere in the arguments, flattens them *together* with one
   reference numbering (shared references across arguments are stored once) and gives every
   Variable a *spec*: the value its argument's prefix (``in_axes``, ``in_shardings``...)
   assigns to it, resolved through :class:`StateAxes` / :class:`StateSharding` /
   :class:`DiffState` filter mappings. The result, a :class:`Lifted`, holds the outer
   Variables in leaf order and the other (array) leaves.
2. The transform groups the raw values by spec (axis, carry, broadcast, donated,
   differentiable...) and hands them to the JAX transform together with a pure function.
3. Inside, :meth:`Skeleton.enter` rebuilds fresh objects around the traced values and the
   user function runs on them; :meth:`InnerCall.exit` flattens the inputs again (so changes
   of values *and* of structure are seen) and the outputs (graph nodes in outputs are
   flattened too; a node that was an input becomes a reference to it), and returns plain
   values plus a hashable :class:`OutInfo`.
4. :meth:`Lifted.apply` (outside again) writes the new values into the *original*
   Variables (one slot store each when the structure did not change, otherwise a structural
   update of the original objects), and rebuilds the outputs: an input object returned by
   the function comes back as the same Python object.

``OutInfo`` travels through the JAX transform as the aux data of a leafless pytree
(:class:`StaticBox`), so JAX itself stores it with each trace and hands it back on every
call, even when a compiled function is reused without tracing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from . import _graph
from ._graphdef import LEAF, NODE, PYTREE, REF, VAR, GraphDef, thaw
from ._state import State, nest
from ._transforms._errors import (
    INCONSISTENT_ALIAS,
    NOT_A_NODE_FOR_MAPPING,
    AliasingError,
    OutputError,
    PrefixError,
)
from ._transforms._prefix import (
    Carry,
    DiffState,
    PrefixMapping,
    StateAxes,
    StateSharding,
    broadcast_out_prefix,
    broadcast_prefix,
    is_graph_node,
    is_lift_leaf,
    is_prefix_leaf,
    keystr_parts,
    resolve_spec,
)
from ._variable import Variable, _new_variable

__all__ = [
    "Carry",
    "DiffState",
    "InnerCall",
    "Lifted",
    "OutInfo",
    "PrefixMapping",
    "Skeleton",
    "StateAxes",
    "StateSharding",
    "StaticBox",
    "broadcast_out_prefix",
    "broadcast_prefix",
    "is_graph_node",
    "is_lift_leaf",
    "is_prefix_leaf",
    "lift",
    "resolve_spec",
]

PathParts = tuple[Any, ...]

# The slot that holds a Variable's raw value: reading and writing through the descriptor is
# one C call per Variable, the whole cost of the fast path's state transfer.
_RAW_SLOT = Variable.__dict__["_raw_value"]
read_raw: Callable[[Any], Any] = _RAW_SLOT.__get__
write_raw: Callable[[Any, Any], None] = _RAW_SLOT.__set__


# -- graph mode -------------------------------------------------------------------------------


def resolve_graph_mode(graph: bool | None) -> bool:
    """``graph=None`` means the global default (graph mode unless changed)."""
    return _graph._resolve_graph(graph)


def resolve_graph_updates(graph_updates: bool | None) -> bool:
    """``graph_updates=None`` means the global default (``set_graph_updates``; on unless changed)."""
    return _graph._resolve_graph_updates(graph_updates)


def keystr(path: Any) -> str:
    return jax.tree_util.keystr(tuple(path))


def _arg_keypaths(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> list[str]:
    """Readable key paths (``args[0]['w']``, ``kwargs['x']``) of every lift leaf."""
    with_path, _ = jax.tree_util.tree_flatten_with_path((args, dict(kwargs)), is_leaf=is_lift_leaf)
    names = []
    for path, _leaf in with_path:
        head = "args" if path[0].idx == 0 else "kwargs"  # type: ignore[attr-defined]
        names.append(head + keystr(path[1:]))
    return names


# -- flattening with object lists ---------------------------------------------------------------


class _FlatGraph:
    """One flatten pass over several roots with one numbering: the engine's view of a graph."""

    __slots__ = ("root_defs", "leaves", "paths", "objects", "starts", "ref_index")

    def __init__(self, roots: Sequence[Any], *, graph: bool, ref_index: dict[int, int] | None = None,
                 seen: _FlatGraph | None = None):
        ref = {} if ref_index is None else ref_index
        flattener = _graph._Flattener(ref, graph, False, True)
        if seen is not None:  # continue a numbering: earlier objects become REFs
            flattener.keep_alive = list(seen.objects)
        starts = []
        defs = []
        for k, root in enumerate(roots):
            starts.append(len(ref))
            defs.append(flattener.value(root, (k,)))
        self.root_defs = tuple(defs)
        self.leaves: list[Any] = flattener.leaves
        self.paths: list[PathParts] = flattener.paths  # type: ignore[assignment]
        self.objects: list[Any] = flattener.keep_alive
        self.starts = starts
        self.ref_index = ref

    def graphdef(self) -> GraphDef[Any]:
        n = len(self.root_defs)
        root = (PYTREE, tuple, None, tuple(range(n)), self.root_defs)
        return GraphDef(root, len(self.leaves), tuple(self.paths))


def _walk_refs(nodedef: Any, out: list[int]) -> None:
    tag = nodedef[0]
    if tag == REF:
        out.append(nodedef[1])
    elif tag == NODE:
        for child in nodedef[5]:
            _walk_refs(child, out)
    elif tag == PYTREE:
        for child in nodedef[4]:
            _walk_refs(child, out)


def _leaf_indices(graphdef: GraphDef[Any]) -> list[int]:
    out: list[int] = []

    def walk(nodedef: Any) -> None:
        tag = nodedef[0]
        if tag == VAR:
            out.append(nodedef[2])
        elif tag == LEAF:
            out.append(-1)
        elif tag == NODE:
            for child in nodedef[5]:
                walk(child)
        elif tag == PYTREE:
            for child in nodedef[4]:
                walk(child)

    walk(graphdef._root)
    return out


def variable_leaves_for(graphdef: GraphDef[Any], values: Sequence[Any]) -> list[Any]:
    """Leaves for ``unflatten`` that carry each Variable's metadata from ``graphdef``."""
    leaves: list[Any] = []
    it = iter(values)

    def walk(nodedef: Any) -> None:
        tag = nodedef[0]
        if tag == VAR:
            leaves.append(_new_variable(nodedef[1], next(it), {k: thaw(v) for k, v in nodedef[3]}))
        elif tag == LEAF:
            leaves.append(next(it))
        elif tag == NODE:
            for child in nodedef[5]:
                walk(child)
        elif tag == PYTREE:
            for child in nodedef[4]:
                walk(child)

    walk(graphdef._root)
    return leaves


def is_dynamic_leaf(x: Any) -> bool:
    """Values that travel through JAX as data; anything else leaves a transform statically."""
    return isinstance(x, (jax.Array, np.ndarray, np.generic, int, float, complex, bool))


# -- the static part of a lifted call -------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Skeleton:
    """Everything about a call's arguments except array values: enough to rebuild them.

    Attributes:
        treedef: structure of ``(args, kwargs)`` with graph nodes / Variables as leaves.
        node_slots: positions of those nodes among the flat leaves.
        leaf_slots: positions of the other leaves.
        graphdef: joint GraphDef of the nodes (a tuple of roots).
        root_prefixes: the prefix value each root got (for specs of new Variables).
        root_names: readable key paths of the roots (``args[0]``), for messages.
        graph: graph mode (False: tree mode).
        graph_updates: propagate structural changes made inside the function.
    """

    treedef: Any
    node_slots: tuple[int, ...]
    leaf_slots: tuple[int, ...]
    graphdef: GraphDef[Any]
    root_prefixes: tuple[Any, ...]
    root_names: tuple[str, ...]
    graph: bool
    graph_updates: bool
    transform: str

    @property
    def leaf_indices(self) -> tuple[int, ...]:
        """Per graph leaf: the reference index of its Variable, or -1 for a bare array."""
        cached = self.__dict__.get("_leaf_indices")
        if cached is None:
            cached = tuple(_leaf_indices(self.graphdef))
            object.__setattr__(self, "_leaf_indices", cached)
        return cached

    def key(self) -> Hashable:
        """What identifies the traced function: equal keys may share a compiled function."""
        return (self.treedef, self.node_slots, self.graphdef, _hashable(self.root_prefixes),
                self.graph, self.graph_updates)

    def enter(self, var_values: Sequence[Any], leaf_values: Sequence[Any]) -> InnerCall:
        """Inside the transform: rebuild fresh arguments around (traced) values."""
        _register_tracer_types(var_values)
        _register_tracer_types(leaf_values)
        index_ref: dict[int, Any] = {}
        if self.graphdef.num_leaves or self.node_slots:
            roots = _graph.unflatten(self.graphdef, list(var_values), index_ref=index_ref)
        else:
            roots = ()
        flat: list[Any] = [None] * (len(self.node_slots) + len(self.leaf_slots))
        for slot, root in zip(self.node_slots, roots, strict=False):
            flat[slot] = root
        for slot, value in zip(self.leaf_slots, leaf_values, strict=False):
            flat[slot] = value
        args, kwargs = jax.tree_util.tree_unflatten(self.treedef, flat)
        return InnerCall(self, args, kwargs, tuple(roots), index_ref, list(var_values))


def _register_tracer_types(values: Sequence[Any]) -> None:
    """Makes the graph layer treat JAX tracers stored on objects as arrays (state).

    ``_graph`` classifies values by type and caches the result; tracer classes are not
    subclasses of ``jax.Array`` (only instances pass ``isinstance``), so a bare traced
    array attribute would otherwise be taken for a static value. Registering the tracer
    types seen entering a transform keeps such attributes as leaves.
    """
    cache = _graph.KIND_CACHE
    for value in values:
        t = type(value)
        if t not in cache and isinstance(value, jax.core.Tracer):
            cache[t] = _graph.K_ARRAY


def _hashable(x: Any) -> Any:
    try:
        hash(x)
        return x
    except TypeError:
        return id(x)


# -- inside the transform -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class OutInfo:
    """Static description of what the inner function produced (hashable, travels via JAX).

    Attributes:
        in_graphdef: the inputs' GraphDef after the call, or None when unchanged.
        in_old_index: for each object index of ``in_graphdef``, its index before the call
            (-1 for objects created inside).
        out_treedef: structure of the output with graph nodes / Variables as leaves.
        out_node_slots / out_leaf_slots / out_static: where nodes, array leaves and static
            leaves sit among the output's flat leaves (``out_static`` holds the values).
        out_graphdef: GraphDef of the output roots (REFs below ``num_inputs`` point into the
            inputs), or None when the output holds no graph node.
        out_root_refs: per output root, the input index it is, or -1.
        out_ref_indices: input indices referenced from inside new output objects.
        values_only: only Variable values flow back (tree mode / ``graph_updates=False``):
            bare arrays stored on objects are left as they are.
    """

    in_graphdef: GraphDef[Any] | None
    in_old_index: tuple[int, ...]
    out_treedef: Any
    out_node_slots: tuple[int, ...]
    out_leaf_slots: tuple[int, ...]
    out_static: tuple[tuple[int, Any], ...]
    out_graphdef: GraphDef[Any] | None
    out_root_refs: tuple[int, ...]
    out_ref_indices: tuple[int, ...]
    values_only: bool = False


class StaticBox:
    """A pytree with no leaves whose aux data is a static value (how OutInfo crosses JAX)."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value

    def __repr__(self) -> str:
        return f"StaticBox({self.value!r})"


jax.tree_util.register_pytree_node(
    StaticBox, lambda box: ((), _Frozen(box.value)), lambda aux, _: StaticBox(aux.value)
)


class _Frozen:
    """Aux data wrapper: hashes by identity when the value is not hashable."""

    __slots__ = ("value", "_hash")

    def __init__(self, value: Any):
        self.value = value
        try:
            self._hash = hash(value)
        except TypeError:
            self._hash = id(value)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Frozen):
            return False
        if self.value is other.value:
            return True
        try:
            return bool(self.value == other.value)
        except Exception:
            return False

    def __repr__(self) -> str:
        return repr(self.value)


@dataclasses.dataclass(eq=False)
class InnerCall:
    """The rebuilt arguments of one traced call and how to take the results apart again."""

    skeleton: Skeleton
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    roots: tuple[Any, ...]
    index_ref: dict[int, Any]
    var_values: list[Any]

    def current_values(self) -> list[Any]:
        """The values of the original graph leaves now (bare arrays keep their input value)."""
        index_ref = self.index_ref
        return [
            read_raw(index_ref[i]) if i >= 0 else x
            for i, x in zip(self.skeleton.leaf_indices, self.var_values, strict=False)
        ]

    def exit(self, out: Any, *, outputs: bool = True) -> tuple[list[Any], list[Any], list[Any], OutInfo, _FlatGraph | None, _FlatGraph | None]:
        """Flattens the (possibly mutated) inputs and the output.

        Returns ``(in_values, out_var_values, out_leaf_values, info, in_flat, out_flat)``:
        raw values of the inputs' leaves (in the order of ``info.in_graphdef`` or, when
        unchanged, of the original graphdef), raw values of new Variables in the output,
        the output's array leaves, and the static :class:`OutInfo`.
        """
        sk = self.skeleton
        in_flat: _FlatGraph | None = None
        if sk.graph and sk.graph_updates:
            in_flat = _FlatGraph(self.roots, graph=True)
            in_graphdef = in_flat.graphdef()
            in_values = [read_raw(v) if isinstance(v, Variable) else v for v in in_flat.leaves]
            if in_graphdef == sk.graphdef:
                changed_def = None
                old_index: tuple[int, ...] = ()
            else:
                old_of = {id(obj): i for i, obj in self.index_ref.items()}
                old_index = tuple(old_of.get(id(obj), -1) for obj in in_flat.objects)
                changed_def = in_graphdef
        else:
            # Tree mode / no graph updates: only the values of the original Variables flow out.
            in_values = self.current_values()
            changed_def = None
            old_index = ()
        if not outputs:
            out = None
        out_flat_leaves, out_treedef = jax.tree_util.tree_flatten(out, is_leaf=is_lift_leaf)
        node_slots = []
        leaf_slots = []
        statics = []
        leaf_values = []
        out_roots = []
        for i, leaf in enumerate(out_flat_leaves):
            if is_lift_leaf(leaf):
                node_slots.append(i)
                out_roots.append(leaf)
            elif is_dynamic_leaf(leaf):
                leaf_slots.append(i)
                leaf_values.append(leaf)
            else:
                statics.append((i, leaf))
        out_graphdef = None
        out_values: list[Any] = []
        root_refs: tuple[int, ...] = ()
        ref_indices: tuple[int, ...] = ()
        out_flat = None
        if out_roots:
            if sk.graph:
                if in_flat is None:
                    in_flat = _FlatGraph(self.roots, graph=True)
                n_in = len(in_flat.objects)
                out_flat = _FlatGraph(out_roots, graph=True, ref_index=dict(in_flat.ref_index), seen=in_flat)
            else:
                n_in = 0
                out_flat = _FlatGraph(out_roots, graph=False)
            root_refs = tuple(d[1] if d[0] == REF and d[1] < n_in else -1 for d in out_flat.root_defs)
            refs: list[int] = []
            for d in out_flat.root_defs:
                if d[0] != REF:
                    _walk_refs(d, refs)
            ref_indices = tuple(sorted({r for r in refs if r < n_in}))
            if all(r >= 0 for r in root_refs):
                out_graphdef = None
            else:
                out_graphdef = out_flat.graphdef()
            out_values = [read_raw(v) if isinstance(v, Variable) else v for v in out_flat.leaves]
        info = OutInfo(
            in_graphdef=changed_def,
            in_old_index=old_index,
            out_treedef=out_treedef,
            out_node_slots=tuple(node_slots),
            out_leaf_slots=tuple(leaf_slots),
            out_static=tuple(statics),
            out_graphdef=out_graphdef,
            out_root_refs=root_refs,
            out_ref_indices=ref_indices,
            values_only=not (sk.graph and sk.graph_updates),
        )
        return in_values, out_values, leaf_values, info, in_flat, out_flat


# -- outside: the lifted call ----------------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class Lifted:
    """A call's arguments split into a :class:`Skeleton`, outer Variables and array leaves.

    Attributes:
        skeleton: the static part.
        variables: the outer graph leaves in order (the objects' own Variables; bare arrays
            stored on objects appear as themselves).
        leaves: the non-node leaves of the arguments.
        var_specs: each Variable's spec (from the prefix, through filter mappings).
        leaf_specs: each non-node leaf's prefix value.
        objects: every outer graph node and Variable, by reference index.
        all_variables: every graph leaf is a Variable (values can be written in place).
    """

    skeleton: Skeleton
    variables: list[Any]
    leaves: list[Any]
    var_specs: list[Any]
    leaf_specs: list[Any]
    objects: list[Any]
    all_variables: bool
    var_paths: list[PathParts]
    root_starts: list[int]
    flat_arg_index: list[int]

    def root_arg(self, k: int) -> int:
        """The positional argument holding root ``k`` (-1: a keyword argument)."""
        return self.flat_arg_index[self.skeleton.node_slots[k]]

    def leaf_arg(self, j: int) -> int:
        """The positional argument holding non-node leaf ``j`` (-1: a keyword argument)."""
        return self.flat_arg_index[self.skeleton.leaf_slots[j]]

    def root_object(self, k: int) -> Any:
        """The outer object that is root ``k`` (the graph node or Variable itself)."""
        root_def = self.skeleton.graphdef._root[4][k]
        if root_def[0] in (NODE, VAR):
            return self.objects[root_def[2]]
        return self.objects[root_def[1]]  # REF: the same object as an earlier root

    def rebuild_arg(self, args: tuple[Any, ...], index: int, leaf_values: Sequence[Any]) -> Any:
        """Positional argument ``index`` with its objects (outer) and new array leaves."""
        sk = self.skeleton
        node_index = {slot: k for k, slot in enumerate(sk.node_slots)}
        values = iter(leaf_values)
        parts = []
        for p, a in enumerate(self.flat_arg_index):
            if a != index:
                continue
            parts.append(self.root_object(node_index[p]) if p in node_index else next(values))
        _, treedef = jax.tree_util.tree_flatten(args[index], is_leaf=is_lift_leaf)
        return jax.tree_util.tree_unflatten(treedef, parts)

    def values(self) -> list[Any]:
        """Current raw values of the graph leaves."""
        return [read_raw(v) if isinstance(v, Variable) else v for v in self.variables]

    def var_where(self, j: int) -> str:
        """Readable location of graph leaf ``j``: ``args[0].layers[1].w``."""
        path = self.var_paths[j]
        return f"{self.skeleton.root_names[path[0]]}{keystr_parts(path[1:])}"

    def write_back(self, info: OutInfo, in_values: Sequence[Any]) -> dict[int, Any] | None:
        """Writes the inputs' new values (and structure) into the original objects.

        Returns an index -> object map of the inputs after the call when the structure
        changed (needed to resolve outputs that refer to inputs), else None.
        """
        if info.in_graphdef is None:
            if self.all_variables:
                for v, x in zip(self.variables, in_values, strict=False):
                    write_raw(v, x)
                return None
            if info.values_only:
                for v, x in zip(self.variables, in_values, strict=False):
                    if isinstance(v, Variable):
                        write_raw(v, x)
                return None
            index_ref = {i: obj for i, obj in enumerate(self.objects)}
            leaves = variable_leaves_for(self.skeleton.graphdef, in_values)
            _graph.unflatten(self.skeleton.graphdef, leaves, index_ref=index_ref)
            return None
        index_ref = {
            new: self.objects[old] for new, old in enumerate(info.in_old_index) if old >= 0
        }
        leaves = variable_leaves_for(info.in_graphdef, in_values)
        _graph.unflatten(info.in_graphdef, leaves, index_ref=index_ref)
        return index_ref

    def build_output(self, info: OutInfo, out_var_values: Sequence[Any], out_leaf_values: Sequence[Any],
                     after: dict[int, Any] | None) -> Any:
        """The function's output with its graph nodes rebuilt (input nodes come back as themselves)."""
        if not info.out_node_slots and not info.out_static:
            return jax.tree_util.tree_unflatten(info.out_treedef, out_leaf_values)
        flat: list[Any] = [None] * (len(info.out_node_slots) + len(info.out_leaf_slots) + len(info.out_static))
        for slot, value in zip(info.out_leaf_slots, out_leaf_values, strict=False):
            flat[slot] = value
        for slot, value in info.out_static:
            flat[slot] = value
        if info.out_node_slots:

            def input_object(index: int) -> Any:
                if after is not None:
                    return after[index]
                if info.in_graphdef is not None:
                    old = info.in_old_index[index]
                    if old < 0:
                        raise OutputError(
                            f"{self.skeleton.transform}: the output refers to an object that was "
                            "attached to an input inside the function, but the inputs are not "
                            "updated by this transform. Fix: return a new object instead."
                        )
                    return self.objects[old]
                return self.objects[index]

            if info.out_graphdef is None:
                roots = [input_object(r) for r in info.out_root_refs]
            else:
                index_ref = {i: input_object(i) for i in info.out_ref_indices}
                for r in info.out_root_refs:
                    if r >= 0:
                        index_ref[r] = input_object(r)
                leaves = variable_leaves_for(info.out_graphdef, out_var_values)
                roots = list(_graph.unflatten(info.out_graphdef, leaves, index_ref=index_ref))
            for slot, root in zip(info.out_node_slots, roots, strict=False):
                flat[slot] = root
        return jax.tree_util.tree_unflatten(info.out_treedef, flat)

    def apply(self, info: OutInfo, in_values: Sequence[Any], out_var_values: Sequence[Any],
              out_leaf_values: Sequence[Any]) -> Any:
        """Writes the inputs back and returns the rebuilt output."""
        after = self.write_back(info, in_values)
        return self.build_output(info, out_var_values, out_leaf_values, after)


def lift(
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    *,
    prefix: Any = None,
    kwargs_prefix: Any = None,
    graph: bool = True,
    graph_updates: bool = True,
    transform: str = "transform",
    prefix_name: str = "in_axes",
    mappings_on_leaves: bool = False,
) -> Lifted:
    """Splits a call's arguments for a lifted transform (step 1 of the engine).

    Args:
        args, kwargs: the call's arguments; graph nodes and Variables may sit anywhere.
        prefix: prefix over the positional arguments (a value, or one entry per argument);
            filter mappings (:class:`StateAxes`...) give per-Variable values.
        kwargs_prefix: the value every keyword argument gets.
        graph: graph mode (shared references kept) or tree mode (they are an error).
        graph_updates: whether structural changes inside the function are propagated.
        transform / prefix_name: names used in error messages.
        mappings_on_leaves: allow a filter mapping above plain array leaves (their spec is
            then the mapping itself), as ``grad`` does for ``DiffState`` arguments.

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.core import Object, Param, BatchStat, StateAxes
        >>> from plait.core._lift import lift
        >>> class Foo(Object):
        ...     def __init__(self):
        ...         self.w = Param(jnp.ones(2))
        ...         self.s = BatchStat(jnp.zeros(2))
        >>> lifted = lift((Foo(), jnp.ones(3)), {}, prefix=(StateAxes({Param: 0, ...: None}), 1))
        >>> lifted.var_specs, lifted.leaf_specs
        ([None, 0], [1])
    """
    kwargs = dict(kwargs)
    flat, treedef = jax.tree_util.tree_flatten((args, kwargs), is_leaf=is_lift_leaf)
    node_slots = []
    leaf_slots = []
    roots = []
    leaves = []
    for i, leaf in enumerate(flat):
        if is_lift_leaf(leaf):
            node_slots.append(i)
            roots.append(leaf)
        else:
            leaf_slots.append(i)
            leaves.append(leaf)
    arg_prefixes = broadcast_prefix(prefix, tuple(args), transform=transform, name=prefix_name)
    flat_arg_index: list[int] = []
    for i, arg in enumerate(args):
        flat_arg_index.extend([i] * len(jax.tree_util.tree_leaves(arg, is_leaf=is_lift_leaf)))
    flat_arg_index.extend([-1] * (len(flat) - len(flat_arg_index)))
    n_arg_leaves = len(arg_prefixes)
    all_prefixes = arg_prefixes + [kwargs_prefix] * (len(flat) - n_arg_leaves)
    root_prefixes = tuple(all_prefixes[i] for i in node_slots)
    leaf_specs = [all_prefixes[i] for i in leaf_slots]
    for spec, i in zip(leaf_specs, leaf_slots, strict=False):
        if isinstance(spec, PrefixMapping) and not mappings_on_leaves:
            names = _arg_keypaths(args, kwargs)
            raise PrefixError(
                NOT_A_NODE_FOR_MAPPING.format(
                    transform=transform,
                    prefix=spec,
                    where=names[i],
                    type_name=type(flat[i]).__name__,
                    hint="an axis, None or a sharding",
                )
            )
    fg = _FlatGraph(roots, graph=graph)
    names = tuple(_arg_keypaths(args, kwargs)[i] for i in node_slots) if roots else ()
    var_specs = []
    for path, var in zip(fg.paths, fg.leaves, strict=False):
        var_specs.append(
            resolve_spec(root_prefixes[path[0]], path[1:], var, transform=transform, where=names[path[0]])
        )
    if len(set(map(_hashable, root_prefixes))) > 1:
        _check_aliasing(fg, root_prefixes, names, transform, prefix_name)
    skeleton = Skeleton(
        treedef=treedef,
        node_slots=tuple(node_slots),
        leaf_slots=tuple(leaf_slots),
        graphdef=fg.graphdef(),
        root_prefixes=root_prefixes,
        root_names=names,
        graph=graph,
        graph_updates=graph_updates,
        transform=transform,
    )
    return Lifted(
        skeleton=skeleton,
        variables=fg.leaves,
        leaves=leaves,
        var_specs=var_specs,
        leaf_specs=leaf_specs,
        objects=fg.objects,
        all_variables=all(isinstance(v, Variable) for v in fg.leaves),
        var_paths=fg.paths,
        root_starts=fg.starts,
        flat_arg_index=flat_arg_index,
    )


def _check_aliasing(fg: _FlatGraph, root_prefixes: tuple[Any, ...], names: tuple[str, ...],
                    transform: str, prefix_name: str) -> None:
    import bisect

    for k, d in enumerate(fg.root_defs):
        refs: list[int] = []
        _walk_refs(d, refs)
        for r in refs:
            owner = bisect.bisect_right(fg.starts, r) - 1
            if owner != k and root_prefixes[owner] != root_prefixes[k]:
                obj = fg.objects[r]
                kind = "Variable" if isinstance(obj, Variable) else f"{type(obj).__name__} object"
                raise AliasingError(
                    INCONSISTENT_ALIAS.format(
                        transform=transform,
                        kind=kind,
                        first=names[owner],
                        second=names[k],
                        name=prefix_name,
                        first_value=root_prefixes[owner],
                        second_value=root_prefixes[k],
                    )
                )


def check_output_aliasing(lifted: Lifted, info: OutInfo, out_prefixes: Sequence[Any],
                          *, transform: str, name: str, in_name: str) -> None:
    """An input object returned as an output must get the same spec on both sides."""
    for k, r in enumerate(info.out_root_refs):
        if r < 0:
            continue
        old = r if info.in_graphdef is None else info.in_old_index[r]
        if old < 0:
            continue
        obj = lifted.objects[old] if old < len(lifted.objects) else None
        # Find the input root that owns this object.
        root = _root_of_index(lifted, old)
        if root is None:
            continue
        in_prefix = lifted.skeleton.root_prefixes[root]
        if out_prefixes[k] != in_prefix:
            kind = "Variable" if isinstance(obj, Variable) else f"{type(obj).__name__} object"
            raise AliasingError(
                INCONSISTENT_ALIAS.format(
                    transform=transform,
                    kind=kind,
                    first=f"{lifted.skeleton.root_names[root]} ({in_name})",
                    second=f"the output ({name})",
                    name=f"{in_name}/{name}",
                    first_value=in_prefix,
                    second_value=out_prefixes[k],
                )
            )


def _root_of_index(lifted: Lifted, index: int) -> int | None:
    import bisect

    k = bisect.bisect_right(lifted.root_starts, index) - 1
    return k if k >= 0 else None


# -- helpers for transforms -----------------------------------------------------------------


def group_by(specs: Sequence[Any], keys: Sequence[Any]) -> tuple[list[list[int]], list[int]]:
    """Buckets positions by spec: ``(positions per key, key index per position)``."""
    index_of = {k: i for i, k in enumerate(keys)}
    buckets: list[list[int]] = [[] for _ in keys]
    where = []
    for j, s in enumerate(specs):
        b = index_of[s]
        buckets[b].append(j)
        where.append(b)
    return buckets, where


def distinct(values: Iterable[Any]) -> list[Any]:
    """Distinct values in first-seen order (by equality)."""
    out: list[Any] = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def node_states(lifted: Lifted, values: Sequence[Any], selected: Sequence[int],
                *, as_variables: bool = True) -> dict[int, State]:
    """Per root: a State of the selected graph leaves (paths relative to the root).

    ``values[i]`` is the value for graph leaf ``selected[i]``; States hold copies of the
    Variables (same type and metadata) carrying those values.
    """
    per_root: dict[int, tuple[list[PathParts], list[Any]]] = {}
    for j, value in zip(selected, values, strict=False):
        path = lifted.var_paths[j]
        var = lifted.variables[j]
        leaf = var.copy(value) if as_variables and isinstance(var, Variable) else value
        paths, leaves = per_root.setdefault(path[0], ([], []))
        paths.append(path[1:])
        leaves.append(leaf)
    return {k: State(nest(p, v), _copy=False) for k, (p, v) in per_root.items()}
