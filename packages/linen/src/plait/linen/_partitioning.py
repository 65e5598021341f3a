"""The legacy ``*_with_axes`` partitioning API (Flax's ``flax.linen.partitioning``).

Parameters are created as usual and their logical axis names are recorded *beside* them,
in a parallel collection named ``<collection>_axes`` (``params_axes`` for parameters), as
:class:`AxisMetadata` leaves under ``<name>_axes``. :func:`get_axis_names` turns that
collection into a tree of PartitionSpecs matching the parameters. The newer API
(``nn.with_logical_partitioning``) boxes the value instead; prefer it for new code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
from jax.sharding import PartitionSpec
from plait.core import (
    RulesFallback,
    get_logical_axis_rules,
    logical_axis_rules,
    logical_to_mesh,
    logical_to_mesh_axes,
    set_logical_axis_rules,
    struct,
    with_logical_constraint,
)

from . import _transforms as transforms
from ._context import _context
from ._errors import LinenError
from ._filters import CollectionFilter, PRNGSequenceFilter, union_filters
from ._lift import In as ScanIn
from ._lift import Out as ScanOut
from ._lift import checkpoint as core_remat_static
from ._module import Module
from ._scope import Variable

ArrayPytree = Any
LogicalPartitionSpec = Any
LogicalRules = Any
PartitionSpecPytree = Any

axis_rules = logical_axis_rules
get_axis_rules = get_logical_axis_rules
set_axis_rules = set_logical_axis_rules
with_sharding_constraint = with_logical_constraint
remat = transforms.checkpoint

__all__ = [
    "ArrayPytree",
    "AxisMetadata",
    "CollectionFilter",
    "LogicalPartitionSpec",
    "LogicalRules",
    "PRNGSequenceFilter",
    "PartitionSpecPytree",
    "PartitionedVariable",
    "ScanIn",
    "ScanOut",
    "axis_rules",
    "core_remat_static",
    "get_axis_names",
    "get_axis_rules",
    "logical_to_mesh",
    "logical_to_mesh_axes",
    "param_with_axes",
    "remat",
    "scan_with_axes",
    "set_axis_rules",
    "variable_with_axes",
    "vmap_with_axes",
    "with_sharding_constraint",
]


@struct.dataclass
class AxisMetadata:
    """The logical axis names of one variable, stored in a ``<collection>_axes`` collection."""

    names: LogicalPartitionSpec = struct.field(pytree_node=False)


def _is_axis_metadata(x: Any) -> bool:
    return isinstance(x, AxisMetadata)


def _same_metadata(previous: Any, new: AxisMetadata) -> AxisMetadata:
    if not isinstance(new, AxisMetadata):
        raise LinenError(f"Axis metadata must be an AxisMetadata, got {type(new).__name__}.")
    if previous and previous != new:
        raise LinenError(
            f"Inconsistent axis names for one variable: {previous.names} and {new.names}.\n"
            "Fix: declare each variable with the same axes every time."
        )
    return new


def _current_module(module: Module | None, what: str) -> Module:
    module = module if module is not None else _context.module_stack[-1]
    if module is None:
        raise LinenError(
            f"{what} must be called inside a module method (or given module=...).\nFix: call "
            "it from setup() or a @compact method."
        )
    return module


def param_with_axes(
    name: str,
    init_fn: Callable[..., Any],
    *init_args: Any,
    axes: tuple[str, ...] | None = None,
    module: Module | None = None,
    **init_kwargs: Any,
) -> Any:
    """``module.param(...)`` that also records ``axes`` in ``params_axes/<name>_axes``.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from plait import linen as nn
        >>> from plait.linen import partitioning as nn_partitioning
        >>> class Linear(nn.Module):
        ...   @nn.compact
        ...   def __call__(self, x):
        ...     w = nn_partitioning.param_with_axes(
        ...         'kernel', jax.nn.initializers.ones, (x.shape[-1], 2), axes=('embed', 'mlp'))
        ...     return x @ w
        >>> variables = Linear().init(jax.random.key(0), jnp.ones((1, 3)))
        >>> nn_partitioning.get_axis_names(variables['params_axes'])
        {'kernel': P('embed', 'mlp')}
    """
    module = _current_module(module, "param_with_axes")
    value = module.param(name, init_fn, *init_args, **init_kwargs)
    if axes is not None:
        axes = tuple(axes)
        if len(axes) != len(getattr(value, "shape", axes)):
            raise LinenError(
                f"param_with_axes({name!r}): {len(axes)} axis names {axes} for a parameter "
                f"of shape {tuple(value.shape)}.\nFix: give one name (or None) per dimension."
            )
        module.sow("params_axes", f"{name}_axes", AxisMetadata(axes), reduce_fn=_same_metadata)
    return value


class PartitionedVariable(Variable):
    """A variable handle whose value is sharding-constrained by its logical axes."""

    def __init__(
        self,
        scope: Any,
        collection: str,
        name: str,
        axes: tuple[str, ...] | None = None,
        fallback: RulesFallback = RulesFallback.AXIS_IS_UNSHARDED,
    ) -> None:
        super().__init__(scope, collection, name)
        self.axes = axes
        self.fallback = fallback

    def _constrain(self, value: Any) -> Any:
        if self.axes is None:
            return value
        return with_logical_constraint(value, self.axes, fallback=self.fallback)

    @property
    def value(self) -> Any:
        return self._constrain(Variable.value.fget(self))  # type: ignore[attr-defined]

    @value.setter
    def value(self, value: Any) -> None:
        Variable.value.fset(self, self._constrain(value))  # type: ignore[attr-defined]


def variable_with_axes(
    collection: str,
    name: str,
    init_fn: Callable[..., Any],
    *init_args: Any,
    axes: tuple[str, ...] | None = None,
    module: Module | None = None,
    fallback: RulesFallback = RulesFallback.AXIS_IS_UNSHARDED,
    **init_kwargs: Any,
) -> PartitionedVariable:
    """``module.variable(...)`` that records ``axes`` in ``<collection>_axes`` and returns a
    :class:`PartitionedVariable`."""
    module = _current_module(module, "variable_with_axes")
    handle = module.variable(collection, name, init_fn, *init_args, **init_kwargs)
    if axes is not None:
        module.sow(
            f"{collection}_axes",
            f"{name}_axes",
            AxisMetadata(tuple(axes)),
            reduce_fn=_same_metadata,
        )
    return PartitionedVariable(handle.scope, collection, name, axes, fallback)


def get_axis_names(axes_metadata: Mapping[str, Any]) -> Any:
    """Turns a ``<collection>_axes`` tree into PartitionSpecs keyed like the variables."""

    def rewrite(tree: Any) -> Any:
        if isinstance(tree, AxisMetadata):
            return PartitionSpec(*tree.names)
        out = {}
        for key, value in tree.items():
            if isinstance(value, AxisMetadata) and key.endswith("_axes"):
                key = key[: -len("_axes")]
            out[key] = rewrite(value)
        return out

    return rewrite(axes_metadata)


def _with_axis_name(fn: Any, axis_cols: list[str], positions: dict[str, tuple[int, Any]]) -> Any:
    """Wraps ``fn`` so that the AxisMetadata in ``axis_cols`` gain (on the way out) / lose (on
    the way in) the name of the transformed axis."""

    def edit(tree: Mapping[str, Any], insert: bool) -> dict[str, Any]:
        out = {}
        for col, sub in tree.items():
            pos, axis_name = positions[col]

            def one(x: Any, pos: int = pos, axis_name: Any = axis_name) -> Any:
                if not isinstance(x, AxisMetadata):
                    return x
                names = list(x.names)
                if insert:
                    names.insert(pos, axis_name)
                elif names[pos] == axis_name:
                    names.pop(pos)
                return AxisMetadata(tuple(names))

            out[col] = jax.tree_util.tree_map(one, sub, is_leaf=_is_axis_metadata)
        return out

    return transforms.map_variables(
        fn,
        axis_cols,
        trans_in_fn=lambda t: edit(t, False),
        trans_out_fn=lambda t: edit(t, True),
        mutable=True,
    )


def _axis_of(variable_axes: Mapping[Any, Any], col: str) -> int:
    for col_filter, axis in variable_axes.items():
        if (
            col_filter is True
            or col_filter == col
            or (not isinstance(col_filter, str) and col in col_filter)
        ):
            return getattr(axis, "axis", axis)
    return 0


def scan_with_axes(
    target: Any,
    variable_axes: Mapping[CollectionFilter, Any] = {},  # noqa: B006 - Flax's signature
    variable_broadcast: CollectionFilter = False,
    variable_carry: CollectionFilter = False,
    split_rngs: Mapping[PRNGSequenceFilter, bool] = {},  # noqa: B006 - Flax's signature
    in_axes: Any = 0,
    out_axes: Any = 0,
    length: int | None = None,
    reverse: bool = False,
    unroll: int = 1,
    axis_name: str = "layers",
    axes_collections: tuple[str, ...] = ("params",),
    data_transform: Callable[..., Any] | None = None,
    methods: Any = None,
) -> Any:
    """``nn.scan`` that also inserts ``axis_name`` into the recorded axes of the scanned
    ``axes_collections``."""
    axis_cols = [f"{col}_axes" for col in axes_collections]
    broadcast = variable_broadcast
    for col in axis_cols:
        broadcast = union_filters(broadcast, col)
    scanned = transforms.scan(
        target,
        variable_axes=variable_axes,
        variable_broadcast=broadcast,
        variable_carry=variable_carry,
        split_rngs=split_rngs,
        in_axes=in_axes,
        out_axes=out_axes,
        length=length,
        reverse=reverse,
        unroll=unroll,
        data_transform=data_transform,
        methods=methods,
    )
    positions = {
        f"{col}_axes": (_axis_of(variable_axes, col), axis_name) for col in axes_collections
    }
    return _with_axis_name(scanned, axis_cols, positions)


def vmap_with_axes(
    target: Any,
    variable_axes: Mapping[CollectionFilter, Any],
    split_rngs: Mapping[PRNGSequenceFilter, bool] = {},  # noqa: B006 - Flax's signature
    in_axes: Any = 0,
    out_axes: Any = 0,
    axis_size: int | None = None,
    axis_name: str | None = None,
    partitioning_axis_names: Mapping[Any, str] = {},  # noqa: B006 - Flax's signature
    spmd_axis_name: str | None = None,
    methods: Any = None,
) -> Any:
    """``nn.vmap`` that inserts ``partitioning_axis_names[col]`` into the recorded axes of
    each collection ``col``."""
    axis_cols = [f"{col}_axes" for col in partitioning_axis_names]
    axes = dict(variable_axes)
    for col in axis_cols:
        axes[col] = None
    mapped = transforms.vmap(
        target,
        variable_axes=axes,
        split_rngs=split_rngs,
        in_axes=in_axes,
        out_axes=out_axes,
        axis_size=axis_size,
        axis_name=axis_name,
        spmd_axis_name=spmd_axis_name,
        methods=methods,
    )
    positions = {
        f"{col}_axes": (_axis_of(variable_axes, col), name)
        for col, name in partitioning_axis_names.items()
    }
    return _with_axis_name(mapped, axis_cols, positions) if axis_cols else mapped
