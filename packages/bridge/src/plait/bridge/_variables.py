"""Linen variables <-> NNX Variables: the one conversion both wrappers use.

A Linen collection and an NNX Variable type are the same thing under two names, through
plait.core's registry (``"params"`` <-> ``Param``, ``"batch_stats"`` <-> ``BatchStat``, an
unknown name <-> a type made for it). What else must survive the trip is metadata:

* A Linen box (``nn.Partitioned``, ``nn.LogicallyPartitioned``, any ``AxisMetadata`` with
  ``to_nnx_metadata``) becomes an NNX Variable whose metadata is the box's (sharding names,
  mesh, rules) plus ``linen_meta_type``, so the way back rebuilds the same box type.
* An NNX Variable with metadata and no Linen origin (``nnx.with_partitioning``) becomes an
  :class:`NNXMeta` box in Linen: a Linen ``AxisMetadata`` that keeps the Variable type and
  its whole metadata dict, so the way back rebuilds the same Variable.
* A Variable without metadata is just its value in Linen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import jax
from jax.sharding import PartitionSpec
from plait import core
from plait.core import FrozenDict, Variable, struct, variable_name_from_type
from plait.linen import meta

from ._errors import DUPLICATE_PATH, NOT_A_VARIABLE, VariableLayoutError

A = TypeVar("A")
B = TypeVar("B")

# Metadata keys every Variable may carry that say nothing about the value itself: a
# Variable holding only these is "vanilla" and is stored in Linen as its bare value.
_NEUTRAL_METADATA = frozenset({"eager_sharding"})


@struct.dataclass
class NNXMeta(meta.AxisMetadata[A]):
    """A Linen box holding an NNX Variable's type, value and metadata.

    ``ToLinen`` stores a Variable that carries metadata (e.g. sharding names from
    ``nnx.with_partitioning``) as an ``NNXMeta`` in its Linen collection, so Linen code sees
    a normal boxed value (``nn.unbox``, lifted transforms' ``add_axis``) and converting back
    gives the same Variable type with the same metadata.

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait import nnx
        >>> from plait.bridge import NNXMeta
        >>> box = NNXMeta(nnx.Param, jnp.ones((2, 3)), {'sharding_names': ('in', 'out')})
        >>> box.get_partition_spec()
        P('in', 'out')
        >>> variable = box.to_nnx_variable()
        >>> type(variable).__name__, variable.sharding_names
        ('Param', ('in', 'out'))
    """

    var_type: type[Variable[Any]] = struct.field(pytree_node=False)
    value: Any
    metadata: Mapping[str, Any] = struct.field(pytree_node=False)

    def __post_init__(self) -> None:
        # A FrozenDict keeps the box hashable, as jit requires of static pytree data.
        if not isinstance(self.metadata, FrozenDict):
            object.__setattr__(self, "metadata", FrozenDict(dict(self.metadata)))

    def unbox(self) -> A:
        """The bare value."""
        return self.value

    def replace_boxed(self, val: B) -> NNXMeta[B]:
        """The same box holding ``val``."""
        return self.replace(value=val)  # type: ignore[return-value]

    def add_axis(self, index: int, params: dict[Any, Any]) -> NNXMeta[A]:
        """The box after a lifted transform inserted axis ``index`` (updates sharding names)."""
        variable = self.to_nnx_variable()
        core.add_axis(variable, index, params)
        return self.replace(metadata=FrozenDict(variable.get_metadata()))

    def remove_axis(self, index: int, params: dict[Any, Any]) -> NNXMeta[A]:
        """The box after a lifted transform removed axis ``index``."""
        variable = self.to_nnx_variable()
        core.remove_axis(variable, index, params)
        return self.replace(metadata=FrozenDict(variable.get_metadata()))

    def get_partition_spec(self) -> PartitionSpec:
        """The PartitionSpec of the value (replicated when there are no sharding names)."""
        spec = core.partition_spec_from_metadata(dict(self.metadata))
        return spec if spec is not None else PartitionSpec()

    def to_nnx_variable(self) -> Variable[A]:
        """The NNX Variable this box stands for (no sharding placement is redone)."""
        return self.var_type.from_metadata(self.value, dict(self.metadata))


def with_partitioning(
    fn: Callable[..., Any],
    names: tuple[str | None, ...],
    mesh: jax.sharding.Mesh | None = None,
) -> Callable[..., Any]:
    """Wraps an initializer so that NNX Variables made from it carry sharding names.

    The same tagging as ``nnx.with_partitioning``; through ``ToLinen`` the Variables reach
    Linen as :class:`NNXMeta` boxes whose ``get_partition_spec()`` gives ``P(*names)``.

    Examples:
        >>> import jax
        >>> from plait import bridge, nnx
        >>> init = bridge.with_partitioning(nnx.initializers.ones, ('in', 'out'))
        >>> nnx.Param(init(jax.random.key(0), (2, 3))).sharding_names
        ('in', 'out')
    """
    return core.with_partitioning(fn, names, mesh)


def is_vanilla_variable(vs: Variable[Any]) -> bool:
    """Whether ``vs`` carries no metadata worth keeping (it is stored as a bare value).

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait import nnx
        >>> from plait.bridge.variables import is_vanilla_variable
        >>> is_vanilla_variable(nnx.Param(jnp.ones(2)))
        True
        >>> is_vanilla_variable(nnx.Param(jnp.ones(2), sharding_names=('x',)))
        False
    """
    for key, value in vs.get_metadata().items():
        if key in _NEUTRAL_METADATA:
            continue
        if key.endswith("_hooks") and not value:
            continue
        return False
    return True


def to_linen_var(vs: Variable[Any]) -> Any:
    """The Linen form of an NNX Variable: its original Linen box, an NNXMeta, or the value.

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait import nnx, linen as nn
        >>> from plait.bridge.variables import to_linen_var, to_nnx_var
        >>> box = nn.LogicallyPartitioned(jnp.ones(2), ('embed',))
        >>> type(to_linen_var(to_nnx_var('params', box))).__name__
        'LogicallyPartitioned'
        >>> to_linen_var(nnx.Param(jnp.zeros(2))).shape
        (2,)
    """
    metadata = vs.get_metadata()
    linen_type = metadata.get("linen_meta_type")
    if linen_type is not None:
        rest = {k: v for k, v in metadata.items() if k != "linen_meta_type"}
        if hasattr(linen_type, "from_nnx_metadata"):
            return linen_type.from_nnx_metadata({"value": vs.get_value(), **rest})
        return linen_type(vs.get_value(), **rest)
    if is_vanilla_variable(vs):
        return vs.get_value()
    return NNXMeta(type(vs), vs.get_value(), metadata)


def to_nnx_var(col: str, x: Any) -> Variable[Any]:
    """The NNX Variable for Linen value ``x`` of collection ``col``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.bridge.variables import to_nnx_var
        >>> type(to_nnx_var('batch_stats', jnp.zeros(3))).__name__
        'BatchStat'
    """
    var_type = core.variable_type_from_name(col, allow_register=True)
    if isinstance(x, NNXMeta):
        if not issubclass(x.var_type, var_type) and not issubclass(var_type, x.var_type):
            raise VariableLayoutError(
                f"An NNXMeta box of Variable type {x.var_type.__name__} is stored in Linen "
                f"collection {col!r}, whose Variable type is {var_type.__name__}.\n"
                f"Fix: store it in collection "
                f"{variable_name_from_type(x.var_type, allow_register=True)!r}."
            )
        return x.to_nnx_variable()
    if isinstance(x, meta.AxisMetadata):
        if hasattr(x, "to_nnx_metadata"):
            metadata = dict(x.to_nnx_metadata())
        else:
            metadata = {k: v for k, v in vars(x).items() if k != "value"}
        metadata.pop("value", None)
        metadata = {k: v for k, v in metadata.items() if v is not None}
        return var_type.from_metadata(x.unbox(), {**metadata, "linen_meta_type": type(x)})
    return var_type.from_metadata(x, {})


def get_col_name(keypath: Iterable[Any]) -> str:
    """The collection name at the start of a JAX key path into a Linen variables dict.

    Examples:
        >>> import jax
        >>> from plait.bridge.variables import get_col_name
        >>> get_col_name((jax.tree_util.DictKey('params'), jax.tree_util.DictKey('w')))
        'params'
    """
    first = next(iter(keypath))
    for attr in ("key", "name", "idx"):
        if hasattr(first, attr):
            return str(getattr(first, attr))
    return str(first)


def _is_leaf(x: Any) -> bool:
    return not isinstance(x, Mapping)


def _flatten(tree: Mapping[Any, Any], prefix: tuple[Any, ...] = ()) -> dict[tuple, Any]:
    flat: dict[tuple, Any] = {}
    for key, value in tree.items():
        path = (*prefix, key)
        if isinstance(value, Mapping) and not isinstance(value, meta.AxisMetadata):
            if value:
                flat.update(_flatten(value, path))
        else:
            flat[path] = value
    return flat


def _unflatten(flat: Mapping[tuple, Any]) -> dict[Any, Any]:
    tree: dict[Any, Any] = {}
    for path, value in flat.items():
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return tree


def _path_text(path: tuple[Any, ...]) -> str:
    return "/".join(str(p) for p in path)


def linen_vars_to_nnx_attrs(variables: Mapping[str, Any]) -> dict[str, Any]:
    """``{collection: tree}`` Linen variables -> one nested dict of NNX Variables.

    The collections are merged by path: ``{'params': {'w': ..}, 'counter': {'n': ..}}``
    becomes ``{'w': Param, 'n': Counter}``. Two collections using the same path are an
    error (NNX has one Variable per attribute).

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.bridge.variables import linen_vars_to_nnx_attrs
        >>> attrs = linen_vars_to_nnx_attrs(
        ...     {'params': {'bn': {'scale': jnp.ones(2)}}, 'batch_stats': {'bn': {'mean': jnp.zeros(2)}}})
        >>> {k: type(v).__name__ for k, v in attrs['bn'].items()}
        {'scale': 'Param', 'mean': 'BatchStat'}
    """
    flat: dict[tuple, Variable[Any]] = {}
    owner: dict[tuple, str] = {}
    for col, tree in variables.items():
        if not isinstance(tree, Mapping):
            raise VariableLayoutError(
                f"Linen collection {col!r} must map names to values, but it is a "
                f"{type(tree).__name__}.\nFix: pass the variables dict returned by init()."
            )
        for path, value in _flatten(tree).items():
            if path in flat:
                raise VariableLayoutError(
                    DUPLICATE_PATH.format(path=_path_text(path), first=owner[path], second=col)
                )
            flat[path] = to_nnx_var(col, value)
            owner[path] = col
    return _unflatten(flat)


def nnx_attrs_to_linen_vars(nnx_attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`linen_vars_to_nnx_attrs`: nested NNX Variables -> Linen variables.

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait import nnx
        >>> from plait.bridge.variables import nnx_attrs_to_linen_vars
        >>> v = nnx_attrs_to_linen_vars({'w': nnx.Param(jnp.ones(2)), 'm': nnx.BatchStat(jnp.zeros(2))})
        >>> sorted(v), sorted(v['params'])
        (['batch_stats', 'params'], ['w'])
    """
    flat: dict[tuple, Any] = {}
    for path, value in _flatten(nnx_attrs).items():
        if not isinstance(value, Variable):
            raise VariableLayoutError(
                NOT_A_VARIABLE.format(path=_path_text(path), kind=type(value).__name__)
            )
        col = variable_name_from_type(type(value), allow_register=True)
        flat[(col, *path)] = to_linen_var(value)
    return _unflatten(flat)


def sort_variable_types(types: Iterable[type]) -> list[type]:
    """Variable types ordered most specific first (subclasses before their bases).

    A filter list built in this order matches each Variable with its own type before a
    base type catches it. Ties are ordered by name, so the result is deterministic.

    Examples:
        >>> from plait import nnx
        >>> from plait.bridge.variables import sort_variable_types
        >>> [t.__name__ for t in sort_variable_types([nnx.Variable, nnx.Param, nnx.Intermediate, nnx.Perturbation])]
        ['Perturbation', 'Intermediate', 'Param', 'Variable']
    """

    def depth(t: type) -> int:
        return sum(1 for base in t.__mro__ if isinstance(base, type) and issubclass(base, Variable))

    return sorted(types, key=lambda t: (-depth(t), t.__name__))
