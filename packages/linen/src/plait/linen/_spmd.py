"""Logical partitioning for Linen: boxes whose axis names go through logical axis rules.

The rules store and the resolution of logical names to mesh axes are plait.core's
(``logical_axis_rules``, ``logical_to_mesh_axes``, ``with_logical_constraint`` ...), shared
with plait.nnx; this module adds the Linen box :class:`LogicallyPartitioned`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from jax.sharding import PartitionSpec
from plait.core import logical_to_mesh_axes, struct

from ._meta import LogicalNames, Partitioned

LogicalRules = Any


@struct.dataclass
class LogicallyPartitioned(Partitioned):
    """A value annotated with *logical* axis names, resolved through axis rules.

    As in Flax, ``get_partition_spec()`` gives the logical names themselves, so
    ``nn.logical_to_mesh_sharding(nn.get_partition_spec(tree), mesh, rules)`` works;
    ``mesh_partition_spec()`` and ``get_sharding(mesh)`` map them with ``rules`` (or the
    active ``nn.logical_axis_rules``), and ``unbox()`` constrains the value accordingly when
    a mesh is given or active.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from plait import linen as nn
        >>> box = nn.LogicallyPartitioned(jnp.ones((2, 4)), ('batch', 'embed'))
        >>> box.get_partition_spec()
        P('batch', 'embed')
        >>> with nn.logical_axis_rules([('embed', 'model')]):
        ...   box.mesh_partition_spec()
        P(None, 'model')
    """

    rules: LogicalRules | None = struct.field(default=None, pytree_node=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rules is not None:
            object.__setattr__(self, "rules", tuple(tuple(r) for r in self.rules))

    def mesh_partition_spec(self) -> PartitionSpec:
        """The mesh PartitionSpec for the logical names under the rules."""
        spec = logical_to_mesh_axes(self.names, self.rules)
        return spec if spec is not None else PartitionSpec()

    def to_nnx_metadata(self) -> dict[str, Any]:
        return {"sharding_names": self.names, "mesh": self.mesh, "sharding_rules": self.rules}

    @classmethod
    def from_nnx_metadata(cls, metadata: dict[str, Any]) -> LogicallyPartitioned[Any]:
        names = metadata.get("sharding_names", metadata.get("sharding", ()))
        return cls(
            metadata["value"], tuple(names), metadata.get("mesh"), metadata.get("sharding_rules")
        )


def with_logical_partitioning(
    fn: Callable[..., Any],
    names: LogicalNames,
    mesh: jax.sharding.Mesh | None = None,
    rules: LogicalRules | None = None,
) -> Callable[..., LogicallyPartitioned[Any]]:
    """Wraps an initializer so that its result is boxed in :class:`LogicallyPartitioned`.

    Examples:
        >>> import jax
        >>> from plait import linen as nn
        >>> init = nn.with_logical_partitioning(jax.nn.initializers.ones, ('embed', 'mlp'))
        >>> init(jax.random.key(0), (2, 3)).names
        ('embed', 'mlp')
    """

    def wrapper(*args: Any, **kwargs: Any) -> LogicallyPartitioned[Any]:
        return LogicallyPartitioned(fn(*args, **kwargs), tuple(names), mesh, rules)

    return wrapper
