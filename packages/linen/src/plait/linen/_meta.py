"""Boxed variable metadata (Flax's ``flax.core.meta``), public as ``plait.linen.meta``.

A box (:class:`AxisMetadata`) wraps a variable's value together with metadata that must
follow the value through lifted transforms: when ``nn.vmap`` / ``nn.scan`` add a leading
axis to a variable, they call ``add_axis`` on its box so that, e.g., the partition names of
a :class:`Partitioned` parameter gain the new axis name. Boxes are JAX pytrees whose only
child is the value, so ``jax.tree.map`` over a variables dict keeps them.

``Module.param`` returns the *unboxed* value by default; the stored variables keep the box,
which is how ``get_partition_spec(variables)`` finds the sharding of every parameter.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

import jax
from jax.sharding import NamedSharding, PartitionSpec
from plait import core as core_sharding
from plait.core import struct

from ._errors import LinenError

A = TypeVar("A")
B = TypeVar("B")
TAxisMetadata = TypeVar("TAxisMetadata", bound="AxisMetadata[Any]")

# Key of ``metadata_params`` naming the mesh axis of the axis a lifted vmap/scan adds
# (the same constant as plait.core's).
PARTITION_NAME = core_sharding.PARTITION_NAME

LogicalNames = tuple[str | None, ...]


class AxisMetadata[A](metaclass=abc.ABCMeta):
    """Abstract box carrying metadata that must follow a variable through transforms.

    Subclasses are JAX pytrees whose single child is the boxed value, and implement
    ``unbox``, ``replace_boxed``, ``add_axis`` and ``remove_axis``.
    """

    @abc.abstractmethod
    def unbox(self) -> A:
        """The raw value without metadata."""

    @abc.abstractmethod
    def replace_boxed(self, val: B) -> AxisMetadata[B]:
        """A copy of the box holding ``val`` instead of the current value."""

    @abc.abstractmethod
    def add_axis(self: TAxisMetadata, index: int, params: dict[Any, Any]) -> TAxisMetadata:
        """Metadata after a transform inserted a new axis at ``index`` of the value."""

    @abc.abstractmethod
    def remove_axis(self: TAxisMetadata, index: int, params: dict[Any, Any]) -> TAxisMetadata:
        """Metadata after a transform removed axis ``index`` of the value."""


def is_axis_metadata(val: Any) -> bool:
    """Whether ``val`` is an :class:`AxisMetadata` box."""
    return isinstance(val, AxisMetadata)


def map_axis_meta(fn: Callable[[AxisMetadata[Any]], Any], tree: Any) -> Any:
    """Applies ``fn`` to every box in ``tree`` (leaves that are not boxes are kept)."""

    def update(x: Any) -> Any:
        return fn(x) if isinstance(x, AxisMetadata) else x

    return jax.tree_util.tree_map(update, tree, is_leaf=is_axis_metadata)


def add_axis(tree: Any, index: int, params: dict[Any, Any]) -> Any:
    """Calls ``add_axis(index, params)`` on every box in ``tree``."""
    return map_axis_meta(lambda x: x.add_axis(index, params), tree)


def remove_axis(tree: Any, index: int, params: dict[Any, Any]) -> Any:
    """Calls ``remove_axis(index, params)`` on every box in ``tree``."""
    return map_axis_meta(lambda x: x.remove_axis(index, params), tree)


def unbox(tree: Any) -> Any:
    """Replaces every box in ``tree`` by its value.

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.linen import meta
        >>> boxed = {'w': meta.Partitioned(jnp.ones(2), ('embed',))}
        >>> meta.unbox(boxed)['w'].shape
        (2,)
    """
    return map_axis_meta(lambda x: x.unbox(), tree)


def replace_boxed(tree: Any, updates: Any) -> Any:
    """Puts the values of ``updates`` into the boxes of ``tree`` (same structure, unboxed)."""

    def inner(x: Any, update: Any) -> Any:
        return x.replace_boxed(update) if isinstance(x, AxisMetadata) else update

    return jax.tree_util.tree_map(inner, tree, updates, is_leaf=is_axis_metadata)


def get_global_mesh() -> Any:
    """The mesh set by ``jax.sharding.use_mesh`` / ``jax.set_mesh`` (None when unset)."""
    getter = getattr(jax.sharding, "get_abstract_mesh", None)
    mesh = getter() if getter is not None else None
    if mesh is None or getattr(mesh, "empty", True):
        return None
    return mesh


def global_mesh_defined() -> bool:
    """Whether a global mesh context is active."""
    return get_global_mesh() is not None


def _axis_name(params: dict[Any, Any], cls_name: str) -> Any:
    if PARTITION_NAME not in params:
        raise LinenError(
            f"A lifted transform added or removed an axis of a {cls_name} variable, but "
            f"no mesh axis name was given for it.\n"
            f"Fix: pass metadata_params={{nn.PARTITION_NAME: 'layers'}} (or None for an "
            "unsharded axis) to nn.vmap / nn.scan."
        )
    return params[PARTITION_NAME]


@struct.dataclass
class Partitioned(AxisMetadata[A]):
    """A value annotated with the mesh axis name of each of its dimensions.

    Args:
        value: the boxed array (or pytree).
        names: one mesh axis name (or None) per dimension.
        mesh: the mesh to constrain to when unboxing; None uses the global mesh if any.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from plait import linen as nn
        >>> init = nn.with_partitioning(jax.nn.initializers.ones, ('data', None))
        >>> box = init(jax.random.key(0), (2, 3))
        >>> box.names, box.get_partition_spec()
        (('data', None), P('data', None))
    """

    value: Any
    names: LogicalNames = struct.field(pytree_node=False)
    mesh: jax.sharding.Mesh | None = struct.field(default=None, pytree_node=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(self.names))

    def replace(self, **updates: Any) -> Partitioned[A]:
        """A copy with some fields replaced."""
        return dataclasses.replace(self, **updates)

    def get_partition_spec(self) -> PartitionSpec:
        """The PartitionSpec of the value."""
        return PartitionSpec(*self.names)

    def mesh_partition_spec(self) -> PartitionSpec:
        """The PartitionSpec in mesh axes (the names are mesh axes already)."""
        return self.get_partition_spec()

    def get_sharding(self, mesh: jax.sharding.Mesh) -> jax.sharding.Sharding:
        """The NamedSharding of the value on ``mesh``."""
        return NamedSharding(mesh, self.mesh_partition_spec())

    def unbox(self, apply_constraint: bool = True) -> A:
        """The value, sharding-constrained to its partition when a mesh is known."""
        if not apply_constraint:
            return self.value
        mesh = self.mesh if self.mesh is not None else get_global_mesh()
        if mesh is None:
            return self.value
        spec = self.mesh_partition_spec()
        target = NamedSharding(mesh, spec) if self.mesh is not None else spec
        return jax.lax.with_sharding_constraint(self.value, target)

    def replace_boxed(self, val: B) -> Partitioned[B]:
        return dataclasses.replace(self, value=val)  # type: ignore[return-value]

    def add_axis(self, index: int, params: dict[Any, Any]) -> Partitioned[A]:
        axis_name = _axis_name(params, type(self).__name__)
        names = list(self.names)
        while len(names) < index:
            names.append(None)
        names.insert(index, axis_name)
        return dataclasses.replace(self, names=tuple(names))

    def remove_axis(self, index: int, params: dict[Any, Any]) -> Partitioned[A]:
        axis_name = _axis_name(params, type(self).__name__)
        names = list(self.names)
        if names[index] != axis_name:
            raise LinenError(
                f"Cannot remove axis {index} named {names[index]!r} from {type(self).__name__} "
                f"names {tuple(names)}: the transform's metadata_params name it "
                f"{axis_name!r}.\nFix: use the same PARTITION_NAME in every transform over "
                "this variable."
            )
        names.pop(index)
        return dataclasses.replace(self, names=tuple(names))

    def to_nnx_metadata(self) -> dict[str, Any]:
        """The metadata as an nnx Variable metadata dict."""
        return {"sharding_names": self.names, "mesh": self.mesh}

    @classmethod
    def from_nnx_metadata(cls, metadata: dict[str, Any]) -> Partitioned[Any]:
        """Builds a box from an nnx Variable's value and metadata dict."""
        names = metadata.get("sharding_names", metadata.get("sharding", ()))
        return cls(metadata["value"], tuple(names), metadata.get("mesh"))


def with_partitioning(
    fn: Callable[..., Any], names: LogicalNames, mesh: jax.sharding.Mesh | None = None
) -> Callable[..., Partitioned[Any]]:
    """Wraps an initializer so that its result is boxed in :class:`Partitioned`.

    Examples:
        >>> import jax
        >>> from plait import linen as nn
        >>> init = nn.with_partitioning(jax.nn.initializers.zeros, (None, 'model'))
        >>> init(jax.random.key(0), (4, 8)).names
        (None, 'model')
    """

    def wrapper(*args: Any, **kwargs: Any) -> Partitioned[Any]:
        return Partitioned(fn(*args, **kwargs), tuple(names), mesh)

    return wrapper


def _spec_of(x: Any) -> Any:
    # Any box that knows its spec (Partitioned, the bridge's NNXMeta, user boxes), as Flax.
    if isinstance(x, AxisMetadata) and hasattr(x, "get_partition_spec"):
        return x.get_partition_spec()
    if hasattr(x, "shape"):
        return PartitionSpec()
    return None


def get_partition_spec(tree: Any) -> Any:
    """A tree of PartitionSpecs: a box's spec, ``PartitionSpec()`` for plain arrays.

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait import linen as nn
        >>> tree = {'w': nn.Partitioned(jnp.ones((2, 2)), ('a', None)), 'b': jnp.ones(2)}
        >>> nn.get_partition_spec(tree)
        {'b': P(), 'w': P('a', None)}
    """
    return jax.tree_util.tree_map(_spec_of, tree, is_leaf=is_axis_metadata)


def get_sharding(tree: Any, mesh: jax.sharding.Mesh) -> Any:
    """A tree of NamedShardings on ``mesh`` for the boxes / arrays of ``tree``."""

    def to_sharding(x: Any) -> Any:
        if isinstance(x, AxisMetadata) and hasattr(x, "get_sharding"):
            return x.get_sharding(mesh)
        spec = _spec_of(x)
        return None if spec is None else NamedSharding(mesh, spec)

    return jax.tree_util.tree_map(to_sharding, tree, is_leaf=is_axis_metadata)
