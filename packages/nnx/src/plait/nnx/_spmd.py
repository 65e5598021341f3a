"""Abstract (shape-only) models with shardings, for sharded init and checkpoint restore.

The sharding vocabulary itself (``with_partitioning``, ``get_partition_spec``,
``get_named_sharding``, ``with_sharding_constraint``, logical axis rules) is plait.core's
and re-exported unchanged; this file adds the nnx-level helpers built on it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import jax
from jax.sharding import NamedSharding
from plait.core import (
    Variable,
    get_named_sharding,
    get_var_pspec,
    is_graph_node,
    merge,
    split,
)

A = TypeVar("A")


def _mesh_in_context() -> Any:
    abstract = jax.sharding.get_abstract_mesh()
    if abstract.empty:
        return None
    try:
        concrete = jax.sharding.get_mesh()
    except ValueError:  # inside jit only the abstract mesh is known, and it is enough
        return abstract
    return abstract if concrete.empty else concrete


def _abstract_variable(v: Variable) -> Variable:
    value = v.get_raw_value()
    if not (hasattr(value, "shape") and hasattr(value, "dtype")):
        return v.copy()
    mesh = v.get_metadata("mesh", None) or _mesh_in_context()
    spec = get_var_pspec(v) if mesh is not None else None
    sharding = NamedSharding(mesh, spec) if spec is not None else None
    return v.replace(jax.ShapeDtypeStruct(value.shape, value.dtype, sharding=sharding))


def as_abstract(tree: A, graph: bool | None = None) -> A:  # noqa: UP047 - Flax-style TypeVar generics
    """``tree`` with every Variable's value replaced by a ``jax.ShapeDtypeStruct``.

    Where a Variable has ``sharding_names`` metadata and a mesh is known (its ``mesh``
    metadata, or the mesh set with ``jax.set_mesh``), the struct carries the
    ``NamedSharding`` of those names (through the active logical axis rules). Works on
    a State, any pytree of Variables, or a graph node (a new node is returned).

    Example:
      >>> import jax.numpy as jnp
      >>> from plait import nnx
      >>> state = nnx.State({"w": nnx.Param(jnp.ones((2, 3)))})
      >>> nnx.as_abstract(state)["w"].value
      ShapeDtypeStruct(shape=(2, 3), dtype=float32)
    """
    if is_graph_node(tree):
        graphdef, state = split(tree) if graph is None else split(tree, graph=graph)
        return merge(graphdef, as_abstract(state))
    return jax.tree.map(
        lambda x: _abstract_variable(x) if isinstance(x, Variable) else x,
        tree,
        is_leaf=lambda x: isinstance(x, Variable),
    )


abstract_with_sharding = as_abstract


def get_abstract_model(init_fn: Callable[[], Any], mesh, *, graph: bool | None = None):
    """``(graphdef, abstract_state)`` of the model ``init_fn()`` builds, without computing it.

    ``init_fn`` runs under ``jax.eval_shape``; every Variable of the returned State holds a
    ``jax.ShapeDtypeStruct`` whose sharding is the ``NamedSharding`` on ``mesh`` of its
    partition metadata. Use it as the target of a sharded checkpoint restore, or to jit
    the init with ``out_shardings``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from plait import nnx
      >>> class Model(nnx.Module):
      ...   def __init__(self):
      ...     self.w = nnx.Param(jnp.ones((4, 2)), sharding_names=("data", None))
      >>> mesh = jax.make_mesh((1,), ("data",))
      >>> graphdef, state = nnx.get_abstract_model(Model, mesh)
      >>> state["w"].value.sharding.spec == jax.sharding.PartitionSpec("data", None)
      True
    """
    box: dict[str, Any] = {}

    def build():
        model = init_fn()
        graphdef, state = split(model) if graph is None else split(model, graph=graph)
        box["graphdef"] = graphdef
        return state

    abstract_state = jax.eval_shape(build)
    shardings = get_named_sharding(abstract_state, mesh)
    placed = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
        abstract_state,
        shardings,
    )
    return box["graphdef"], placed
