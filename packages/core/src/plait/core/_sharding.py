"""Sharding metadata shared by plait.nnx, plait.linen and plait.checkpoint.

Three ideas:

* **Logical axis rules** map the names a model gives its array dimensions (``'batch'``,
  ``'embed'``, ``'mlp'``) to the axes of a device mesh (``'data'``, ``'model'``). The active
  rules live in a context variable: ``logical_axis_rules`` (context manager),
  ``set_logical_axis_rules`` and ``get_logical_axis_rules``. Flax's ``flax.core.spmd`` and
  ``flax.linen`` partitioning use the same store, and so do both plait front ends.
* **Partition metadata** on Variables: ``sharding_names`` (a tuple with one entry per array
  dimension: a logical or mesh axis name, a tuple of names, or ``None``), optionally
  ``mesh`` and ``sharding_rules``. ``with_partitioning`` tags an initializer's result with
  them; ``get_partition_spec`` / ``get_named_sharding`` read them back as PartitionSpecs /
  NamedShardings; ``shard_value`` places a value by them.
* **Constraints**: ``with_logical_constraint`` (Linen semantics: a no-op without rules) and
  ``with_sharding_constraint`` (NNX semantics: names are mesh axes, mapped through the
  rules when rules are active). Both are no-ops when no mesh is given or active.

Two resolutions of names through rules exist, as in Flax: ``logical_to_mesh_axes`` (Linen:
rules are priorities, a mesh axis is used at most once, unknown names become ``None``) and
``get_pspec`` (NNX: each name is looked up, unknown names are kept as mesh axis names).
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import enum
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final, TypeVar

import jax
from jax.sharding import NamedSharding, PartitionSpec

from . import _variable
from ._variable import Variable, with_metadata

__all__ = [
    "PARTITION_NAME",
    "LogicalRules",
    "RulesFallback",
    "add_axis",
    "composite_rules",
    "from_sharding_rules",
    "get_logical_axis_rules",
    "get_named_sharding",
    "get_partition_spec",
    "get_pspec",
    "get_var_pspec",
    "logical_axis_rules",
    "logical_to_mesh",
    "logical_to_mesh_axes",
    "logical_to_mesh_sharding",
    "partition_spec_from_metadata",
    "remove_axis",
    "set_logical_axis_rules",
    "shard_value",
    "with_logical_constraint",
    "with_partitioning",
    "with_sharding_constraint",
]

# TypeVars, not PEP 695 syntax: ci/run.py parses this file with the host Python (3.11).
A = TypeVar("A")
F = TypeVar("F", bound=Callable[..., Any])
LogicalRules = Sequence[tuple[str, str | tuple[str, ...] | None]]

# Metadata key naming the axis a lifted vmap/scan adds (Flax's nnx.spmd.PARTITION_NAME).
PARTITION_NAME: Final = "partition_name"
# Metadata keys read for a Variable's per-dimension names: plait's and Flax 0.12's name
# first, then the newer Flax name.
SHARDING_NAME_KEYS: Final = ("sharding_names", "out_sharding")


# --------------------------------------------------------------------------- rules


_ACTIVE_RULES: contextvars.ContextVar[LogicalRules] = contextvars.ContextVar(
    "plait_logical_axis_rules", default=()
)


def _check_rules(rules: Any) -> LogicalRules:
    if not isinstance(rules, (tuple, list)):
        raise ValueError(
            f"Logical axis rules must be a list or tuple of (logical_name, mesh_axes) pairs, "
            f"got {type(rules).__name__}. Example: [('batch', 'data'), ('embed', None)]."
        )
    for i, rule in enumerate(rules):
        ok = isinstance(rule, (tuple, list)) and len(rule) == 2 and isinstance(rule[0], str)
        if ok:
            target = rule[1]
            ok = (
                target is None
                or isinstance(target, str)
                or (isinstance(target, tuple) and all(isinstance(t, str) for t in target))
            )
        if not ok:
            raise ValueError(
                f"Logical axis rule #{i} is {rule!r}; each rule must be a pair "
                "(logical_name: str, mesh_axes: str | tuple[str, ...] | None), e.g. "
                "('embed', 'model')."
            )
    return rules


def set_logical_axis_rules(rules: LogicalRules) -> None:
    """Sets the active logical axis rules (for this thread / context).

    Example:
      >>> from plait.core import get_logical_axis_rules, set_logical_axis_rules
      >>> set_logical_axis_rules([('batch', 'data')])
      >>> get_logical_axis_rules()
      [('batch', 'data')]
      >>> set_logical_axis_rules(())
    """
    _ACTIVE_RULES.set(_check_rules(rules))


def get_logical_axis_rules() -> LogicalRules:
    """The active logical axis rules (``()`` when none are set)."""
    return _ACTIVE_RULES.get()


@contextlib.contextmanager
def logical_axis_rules(rules: LogicalRules) -> Iterator[None]:
    """Context manager activating ``rules``; the previous rules return on exit.

    Example:
      >>> from plait.core import logical_axis_rules, logical_to_mesh_axes
      >>> with logical_axis_rules([('batch', 'data'), ('embed', 'model')]):
      ...   logical_to_mesh_axes(('batch', 'embed'))
      P('data', 'model')
    """
    token = _ACTIVE_RULES.set(_check_rules(rules))
    try:
        yield
    finally:
        _ACTIVE_RULES.reset(token)


class _Unassigned:
    def __repr__(self) -> str:
        return "<unassigned>"


_UNASSIGNED: Final = _Unassigned()


def _mesh_axes_of(entry: Any) -> set[str]:
    if entry is None or entry is _UNASSIGNED:
        return set()
    if isinstance(entry, tuple):
        return {e for e in entry if isinstance(e, str)}
    return {entry} if isinstance(entry, str) else set()


def _assign_by_priority(names: Sequence[Any], rules: LogicalRules) -> list[Any]:
    """Linen's resolution; unmatched string names stay ``_UNASSIGNED``."""
    names = tuple(names)
    counts = collections.Counter(n for n in names if isinstance(n, str))
    repeated = sorted(n for n, c in counts.items() if c > 1)
    if repeated:
        raise ValueError(
            f"Logical axis names {repeated} occur more than once in {names}; each array "
            "dimension needs its own logical name."
        )
    assigned = [_UNASSIGNED if isinstance(n, str) else n for n in names]
    for logical, mesh_axes in _check_rules(rules):
        if logical not in counts:
            continue
        position = names.index(logical)
        if assigned[position] is not _UNASSIGNED:
            continue
        used = set().union(*(_mesh_axes_of(a) for a in assigned))
        if not (_mesh_axes_of(mesh_axes) & used):
            assigned[position] = mesh_axes
    return assigned


def logical_to_mesh_axes(
    array_dim_names: Sequence[str | None] | None, rules: LogicalRules | None = None
) -> PartitionSpec | None:
    """Resolves per-dimension logical names to a mesh PartitionSpec (Linen semantics).

    Rules are tried in order; a rule assigns its mesh axes to the dimension named by its
    logical name if that dimension is still unassigned and none of the mesh axes is
    already used by another dimension. Names no rule assigns become ``None`` (replicated);
    ``None`` entries stay ``None``.

    Args:
      array_dim_names: one logical name (or ``None``) per dimension, or ``None``.
      rules: the rules; default: the active ones.

    Raises:
      ValueError: a logical name appears twice, or a rule is malformed.

    Example:
      >>> from plait.core import logical_to_mesh_axes
      >>> rules = [('batch', 'data'), ('heads', 'model'), ('mlp', 'model')]
      >>> logical_to_mesh_axes(('batch', 'heads', 'mlp', None), rules)
      P('data', 'model', None, None)
    """
    if array_dim_names is None:
        return None
    if rules is None:
        rules = get_logical_axis_rules()
    assigned = _assign_by_priority(array_dim_names, rules)
    return PartitionSpec(*(None if a is _UNASSIGNED else a for a in assigned))


def _is_spec_leaf(x: Any) -> bool:
    return isinstance(x, PartitionSpec)


def logical_to_mesh(tree: Any, rules: LogicalRules | None = None) -> Any:
    """Applies ``logical_to_mesh_axes`` to every PartitionSpec in ``tree``.

    Example:
      >>> from jax.sharding import PartitionSpec as P
      >>> from plait.core import logical_to_mesh
      >>> logical_to_mesh({'w': P('embed', 'mlp')}, [('mlp', 'model')])
      {'w': P(None, 'model')}
    """
    return jax.tree.map(
        lambda x: logical_to_mesh_axes(tuple(x), rules) if _is_spec_leaf(x) else x,
        tree,
        is_leaf=_is_spec_leaf,
    )


def logical_to_mesh_sharding(
    tree: Any, mesh: jax.sharding.Mesh, rules: LogicalRules | None = None
) -> Any:
    """Like ``logical_to_mesh`` but returns ``NamedSharding(mesh, spec)`` leaves."""
    return jax.tree.map(
        lambda x: NamedSharding(mesh, x) if _is_spec_leaf(x) else x,
        logical_to_mesh(tree, rules),
        is_leaf=_is_spec_leaf,
    )


def composite_rules(rule1: LogicalRules, rule2: LogicalRules) -> LogicalRules:
    """Combines two rule sets; a logical name they map differently is an error.

    Example:
      >>> from plait.core import composite_rules
      >>> composite_rules([('a', 'x')], [('b', 'y')])
      (('a', 'x'), ('b', 'y'))
    """
    if not rule1 and not rule2:
        return ()
    if not rule2:
        return rule1
    if not rule1:
        return rule2
    merged = dict(rule1)
    for name, mesh_axes in rule2:
        if name in merged and merged[name] != mesh_axes:
            raise ValueError(
                f"Inconsistent logical axis rules for {name!r}: {merged[name]!r} (active "
                f"rules) vs {mesh_axes!r} (the Variable's sharding_rules). Make them agree."
            )
        merged[name] = mesh_axes
    return tuple(merged.items())


def from_sharding_rules(sharding: Sequence[Any], sharding_rules: LogicalRules) -> tuple:
    """Looks each name of ``sharding`` up in the rules (NNX semantics).

    A name without a rule is kept (it is taken to be a mesh axis name). Names inside a
    tuple entry are looked up one by one (plait extension: Flax keeps such tuples as they
    are).

    Example:
      >>> from plait.core import from_sharding_rules
      >>> from_sharding_rules(('embed', 'data', None), [('embed', 'model')])
      ('model', 'data', None)
    """
    table = dict(sharding_rules)

    def look_up(name: Any) -> Any:
        return table[name] if isinstance(name, str) and name in table else name

    resolved = []
    for entry in sharding:
        if isinstance(entry, tuple):
            parts: list[str] = []
            for name in entry:
                mapped = look_up(name)
                if isinstance(mapped, tuple):
                    parts.extend(mapped)
                elif mapped is not None:
                    parts.append(mapped)
            resolved.append(tuple(parts) if parts else None)
        else:
            resolved.append(look_up(entry))
    return tuple(resolved)


def get_pspec(sharding: Any, sharding_rules: LogicalRules | None = None) -> PartitionSpec:
    """The mesh PartitionSpec for per-dimension names (NNX semantics).

    Uses the active rules combined with ``sharding_rules``; without any rules the names
    are the mesh axes.

    Example:
      >>> from plait.core import get_pspec, logical_axis_rules
      >>> with logical_axis_rules([('embed', 'model')]):
      ...   get_pspec(('embed', None))
      P('model', None)
    """
    if isinstance(sharding, NamedSharding):
        sharding = sharding.spec
    rules = composite_rules(get_logical_axis_rules(), sharding_rules or ())
    if rules:
        return PartitionSpec(*from_sharding_rules(tuple(sharding), rules))
    return PartitionSpec(*sharding)


# --------------------------------------------------------------------------- placement


def _active_mesh(mesh: Any) -> Any:
    """``mesh``, else the mesh set with ``jax.set_mesh``, else None."""
    if mesh is not None:
        return mesh
    abstract = jax.sharding.get_abstract_mesh()
    if abstract.empty:
        return None
    try:
        concrete = jax.sharding.get_mesh()
    except ValueError:  # under jit only the abstract mesh is available (and enough)
        return abstract
    return abstract if concrete.empty else concrete


def _uses_explicit_axes(mesh: Any, spec: PartitionSpec) -> bool:
    explicit = {
        name
        for name, kind in zip(mesh.axis_names, mesh.axis_types, strict=True)
        if kind == jax.sharding.AxisType.Explicit
    }
    used = set().union(*(_mesh_axes_of(e) for e in spec))
    return bool(used & explicit)


def _place(x: Any, spec: PartitionSpec, mesh: Any) -> Any:
    """Puts every leaf of ``x`` on ``mesh`` laid out as ``spec``.

    Eagerly this is a ``device_put``; under a trace it is ``reshard`` when the spec names
    explicit mesh axes (where JAX's constraint is only an assertion) and
    ``with_sharding_constraint`` otherwise.
    """
    unknown = sorted(set().union(*(_mesh_axes_of(e) for e in spec)) - set(mesh.axis_names))
    if unknown:
        raise ValueError(
            f"The sharding {spec} names {unknown}, which are not axes of the mesh "
            f"{tuple(mesh.axis_names)}. If these are logical names, activate rules that map "
            f"them to mesh axes (or None), e.g. `with logical_axis_rules([({unknown[0]!r}, "
            f"{mesh.axis_names[0]!r})]):`."
        )
    sharding = NamedSharding(mesh, spec)
    explicit = _uses_explicit_axes(mesh, spec)

    def one(leaf: Any) -> Any:
        if isinstance(leaf, jax.core.Tracer):
            if explicit:
                return jax.sharding.reshard(leaf, sharding)
            return jax.lax.with_sharding_constraint(leaf, sharding)
        if isinstance(mesh, jax.sharding.AbstractMesh):
            return leaf  # no devices to place a concrete value on
        return jax.device_put(leaf, sharding)

    return jax.tree.map(one, x)


def shard_value(value: Any, out_sharding: Any, sharding_rules: Any, mesh: Any) -> Any:
    """Places ``value`` by per-dimension names (mapped through ``get_pspec``).

    A no-op when ``out_sharding`` is empty or no mesh is given or active (Flax raises in
    some versions; plait leaves the value where it is so that models build off-mesh).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from plait.core import shard_value
      >>> mesh = jax.make_mesh((1,), ('data',))
      >>> shard_value(jnp.ones(4), ('data',), None, mesh).sharding.spec
      P('data',)
    """
    if isinstance(out_sharding, NamedSharding):
        mesh = out_sharding.mesh if mesh is None else mesh
        out_sharding = out_sharding.spec
    if not out_sharding:
        return value
    mesh = _active_mesh(mesh)
    if mesh is None:
        return value
    spec = get_pspec(out_sharding, sharding_rules)
    ndim = getattr(value, "ndim", None)
    if ndim is not None and len(spec) > ndim:
        raise ValueError(
            f"Cannot shard a value of shape {tuple(value.shape)} by {tuple(out_sharding)}: "
            f"{len(spec)} names for {ndim} dimensions. Give at most one name per dimension."
        )
    return _place(value, spec, mesh)


class RulesFallback(enum.Enum):
    """What ``with_logical_constraint`` does with a logical name no rule assigns."""

    AXIS_IS_UNSHARDED = "axis_is_unsharded"
    RAISE_ERROR = "raise_error"
    NO_CONSTRAINT = "no_constraint"


def _is_logical_spec(x: Any) -> bool:
    return (
        x is None
        or isinstance(x, PartitionSpec)
        or (type(x) is tuple and all(e is None or isinstance(e, str) for e in x))
    )


def with_logical_constraint(
    x: Any,
    logical_axis_resources: Any,
    rules: LogicalRules | None = None,
    mesh: jax.sharding.Mesh | None = None,
    fallback: RulesFallback = RulesFallback.AXIS_IS_UNSHARDED,
) -> Any:
    """Constrains ``x``'s layout by logical names (Linen's ``with_logical_constraint``).

    Args:
      x: an array or pytree of arrays.
      logical_axis_resources: a logical PartitionSpec / tuple of names (applied to all of
        ``x``) or a pytree of them that is a prefix of ``x``; ``None`` leaves are skipped.
      rules: logical rules; default: the active ones.
      mesh: the mesh; default: the one set with ``jax.set_mesh``.
      fallback: what to do with a name no rule assigns.

    Returns:
      ``x`` unchanged when there are no rules or no mesh (Flax also skips the constraint
      on CPU; plait applies it, which is what makes simulated-device tests meaningful).
      Otherwise ``x`` placed per the resolved spec (``device_put`` eagerly, a sharding
      constraint or ``reshard`` under ``jit``).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from plait.core import with_logical_constraint
      >>> mesh = jax.make_mesh((1,), ('data',))
      >>> y = with_logical_constraint(jnp.ones((2, 2)), ('batch', 'embed'),
      ...                             rules=[('batch', 'data')], mesh=mesh)
      >>> y.sharding.spec
      P('data', None)
    """
    if rules is None:
        rules = get_logical_axis_rules()
    if not rules or logical_axis_resources is None:
        return x
    mesh = _active_mesh(mesh)
    if mesh is None:
        return x

    def one(spec: Any, subtree: Any) -> Any:
        if spec is None:
            return subtree
        assigned = _assign_by_priority(tuple(spec), rules)
        if any(a is _UNASSIGNED for a in assigned):
            if fallback == RulesFallback.RAISE_ERROR:
                unmatched = [n for n, a in zip(spec, assigned, strict=True) if a is _UNASSIGNED]
                raise ValueError(
                    f"Logical axis names {unmatched} of {tuple(spec)} match no free rule in "
                    f"{list(rules)}. Add a rule for them, or use "
                    "fallback=RulesFallback.AXIS_IS_UNSHARDED."
                )
            if fallback == RulesFallback.NO_CONSTRAINT:
                return subtree
        resolved = PartitionSpec(*(None if a is _UNASSIGNED else a for a in assigned))
        return _place(subtree, resolved, mesh)

    return jax.tree.map(one, logical_axis_resources, x, is_leaf=_is_logical_spec)


def with_sharding_constraint(
    x: Any, axis_resources: Any, mesh: jax.sharding.Mesh | None = None
) -> Any:
    """Constrains ``x``'s layout by mesh axis names (NNX's ``with_sharding_constraint``).

    ``axis_resources`` is a PartitionSpec, a NamedSharding, or a pytree of them that is a
    prefix of ``x``. Names are mapped through the active logical rules when rules are set
    (unknown names are kept as mesh axes). A no-op when no mesh is given or active.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jax.sharding import PartitionSpec as P
      >>> from plait.core import with_sharding_constraint
      >>> with_sharding_constraint(jnp.ones(3), P('data'))  # no mesh: unchanged
      Array([1., 1., 1.], dtype=float32)
    """

    def one(resource: Any, subtree: Any) -> Any:
        if resource is None:
            return subtree
        if isinstance(resource, NamedSharding):
            return _place(subtree, get_pspec(resource.spec), resource.mesh)
        active = _active_mesh(mesh)
        if active is None:
            return subtree
        return _place(subtree, get_pspec(tuple(resource)), active)

    return jax.tree.map(
        one,
        axis_resources,
        x,
        is_leaf=lambda r: r is None or isinstance(r, (PartitionSpec, NamedSharding)),
    )


# --------------------------------------------------------------------------- Variables


def partition_spec_from_metadata(metadata: Mapping[str, Any]) -> PartitionSpec | None:
    """The mesh PartitionSpec described by partition metadata, or None if it has none.

    This is the one reading of the metadata vocabulary (``sharding_names`` or Flax's newer
    ``out_sharding``, plus optional ``sharding_rules``) that nnx Variables and Linen boxes
    (via their ``to_nnx_metadata()`` dict) share. Names go through ``get_pspec``.

    Example:
      >>> from plait.core import partition_spec_from_metadata
      >>> partition_spec_from_metadata({'sharding_names': ('a', None)})
      P('a', None)
    """
    for key in SHARDING_NAME_KEYS:
        names = metadata.get(key)
        if names:
            return get_pspec(names, metadata.get("sharding_rules"))
    return None


def get_var_pspec(v: Variable) -> PartitionSpec | None:
    """A Variable's PartitionSpec: from its metadata, else replicated for arrays, else None.

    Example:
      >>> import jax.numpy as jnp
      >>> from plait.core import Param, get_var_pspec
      >>> get_var_pspec(Param(jnp.ones((2, 3)), sharding_names=(None, 'model')))
      P(None, 'model')
    """
    spec = partition_spec_from_metadata(v.get_metadata())
    if spec is not None:
        return spec
    if hasattr(v.get_raw_value(), "shape"):
        return PartitionSpec()
    return None


def _is_variable(x: Any) -> bool:
    return isinstance(x, Variable)


def get_partition_spec(tree: A) -> A:  # noqa: UP047
    """The PartitionSpec of every Variable / array in ``tree`` (same structure).

    Each Variable becomes a copy holding its PartitionSpec (from ``sharding_names`` mapped
    through the active rules and its ``sharding_rules``, as in Flax 0.12; ``P()`` when it
    has none); bare arrays become ``P()``; other leaves ``None``.

    Example:
      >>> import jax.numpy as jnp
      >>> from plait.core import Param, State, get_partition_spec
      >>> state = State({'w': Param(jnp.ones((2, 2)), sharding_names=('a', None))})
      >>> get_partition_spec(state)['w'].value
      P('a', None)
    """

    def spec_of(x: Any) -> Any:
        if isinstance(x, Variable):
            return x.replace(get_var_pspec(x))
        if hasattr(x, "shape"):
            return PartitionSpec()
        return None

    return jax.tree.map(spec_of, tree, is_leaf=_is_variable)


def get_named_sharding(tree: A, mesh: jax.sharding.Mesh) -> A:  # noqa: UP047
    """``get_partition_spec(tree)`` with every spec turned into ``NamedSharding(mesh, spec)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from plait.core import Param, get_named_sharding
      >>> mesh = jax.make_mesh((1,), ('a',))
      >>> get_named_sharding({'w': Param(jnp.ones(2), sharding_names=('a',))}, mesh)['w'].value.spec
      P('a',)
    """
    return jax.tree.map(
        lambda p: NamedSharding(mesh, p) if _is_spec_leaf(p) else p,
        get_partition_spec(tree),
        is_leaf=_is_spec_leaf,
    )


def with_partitioning(  # noqa: UP047
    initializer: F,
    sharding: Any,
    mesh: jax.sharding.Mesh | None = None,
    **metadata: Any,
) -> F:
    """Wraps an initializer so that its result carries partition metadata.

    The result is a ``VariableMetadata`` whose metadata holds ``sharding_names=sharding``
    and ``mesh`` (plus ``metadata``); a Variable built from it carries them, and places
    its value eagerly when a mesh is given or active. Linen wraps the same result into
    its ``Partitioned`` box.

    Example:
      >>> import jax
      >>> from plait.core import Param, with_partitioning
      >>> init = with_partitioning(jax.nn.initializers.ones, (None, 'model'))
      >>> Param(init(jax.random.key(0), (2, 4))).sharding_names
      (None, 'model')
    """
    return with_metadata(initializer, sharding_names=sharding, mesh=mesh, **metadata)


def _shard_new_variable(variable: Variable, value: Any) -> Any:
    """Eager sharding: a new Variable with ``sharding_names`` is placed on the mesh."""
    if not hasattr(value, "shape"):
        return value
    return shard_value(
        value,
        variable.get_metadata("sharding_names", None),
        variable.get_metadata("sharding_rules", None),
        variable.get_metadata("mesh", None),
    )


_variable.set_eager_sharding_fn(_shard_new_variable)


# --------------------------------------------------------------------------- lifted axes


def _partition_name(transform_metadata: Mapping[Any, Any]) -> tuple[Any, dict[Any, Any]]:
    if PARTITION_NAME not in transform_metadata:
        raise ValueError(
            f"transform_metadata {dict(transform_metadata)!r} has no {PARTITION_NAME!r} entry; "
            "a vmap/scan over Variables with sharding_names must name the new axis, e.g. "
            f"transform_metadata={{{PARTITION_NAME!r}: 'layers'}} (None for unsharded)."
        )
    others = {k: v for k, v in transform_metadata.items() if k != PARTITION_NAME}
    return transform_metadata[PARTITION_NAME], others


def _insert(entries: Any, index: int, value: Any) -> tuple:
    items = list(entries)
    while len(items) < index:
        items.append(None)
    items.insert(index, value)
    return tuple(items)


def _remove(entries: Any, index: int, expected: Any, key: str, v: Variable) -> tuple:
    items = list(entries)
    removed = items.pop(index)
    if removed != expected:
        raise ValueError(
            f"Removing axis {index} from the {key} {tuple(entries)!r} of a {type(v).__name__}: "
            f"expected {expected!r} there but found {removed!r}. The vmap/scan "
            "transform_metadata must match the one used when the axis was added."
        )
    return tuple(items)


def add_axis(tree: A, index: int, transform_metadata: Mapping[Any, Any]) -> A:  # noqa: UP047
    """Records a new leading axis (from vmap/scan) in every Variable's partition metadata.

    ``transform_metadata[PARTITION_NAME]`` is inserted into ``sharding_names`` at
    ``index``; other tuple-valued entries are inserted into the same-named metadata. The
    Variables are updated in place (and their ``on_add_axis`` hooks run); ``tree`` is
    returned.
    """
    axis_name, others = _partition_name(transform_metadata)

    def visit(x: Any) -> Any:
        if isinstance(x, Variable):
            names = x.get_metadata("sharding_names", None)
            if names:
                x.set_metadata(sharding_names=_insert(names, index, axis_name))
            for key, value in others.items():
                current = x.get_metadata(key, None)
                if isinstance(current, tuple) and current:
                    x.set_metadata(key, _insert(current, index, value))
            x.add_axis(index, axis_name)
        return x

    jax.tree.map(visit, tree, is_leaf=_is_variable)
    return tree


def remove_axis(tree: A, index: int, transform_metadata: Mapping[Any, Any]) -> A:  # noqa: UP047
    """Inverse of ``add_axis``: drops the axis at ``index`` from partition metadata."""
    axis_name, others = _partition_name(transform_metadata)

    def visit(x: Any) -> Any:
        if isinstance(x, Variable):
            names = x.get_metadata("sharding_names", None)
            if names:
                x.set_metadata(sharding_names=_remove(names, index, axis_name, "sharding_names", x))
            for key, value in others.items():
                current = x.get_metadata(key, None)
                if isinstance(current, tuple) and current:
                    x.set_metadata(key, _remove(current, index, value, key, x))
            x.remove_axis(index, axis_name)
        return x

    jax.tree.map(visit, tree, is_leaf=_is_variable)
    return tree
