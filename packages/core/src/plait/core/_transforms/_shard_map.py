"""``shard_map`` for functions of stateful objects (per-device code over a mesh)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import jax
from jax.sharding import PartitionSpec

from .._lift import resolve_graph_updates
from .._lift import lift, resolve_graph_mode
from ._common import MISSING, resolve_kwargs, shift_prefix, unbind, wraps
from ._iteration import mapped_pure, prefix_values, unpack_mapped

__all__ = ["shard_map"]

F = TypeVar("F", bound=Callable[..., Any])


def _spec(x: Any) -> Any:
    return PartitionSpec() if x is None else x


def shard_map(
    f: F | Any = MISSING,
    *,
    mesh: Any,
    in_specs: Any,
    out_specs: Any,
    axis_names: Any = frozenset(),
    check_vma: bool = True,
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> Any:
    """``jax.shard_map`` for functions of stateful objects.

    ``in_specs`` is a prefix over the positional arguments; at a graph node it may be a
    ``PartitionSpec`` for all its state or a :class:`StateSharding` of PartitionSpecs per
    filter (``None`` means replicated, ``P()``). ``out_specs`` is a prefix over the output.
    Inside, each Variable holds its shard; updated state leaves with its input spec.

    Examples:
        >>> import jax, jax.numpy as jnp, numpy as np
        >>> from jax.sharding import Mesh, PartitionSpec as P
        >>> from plait.core import Object, Variable, shard_map
        >>> mesh = Mesh(np.array(jax.devices()), ("d",))
        >>> class Total(Object):
        ...     def __init__(self):
        ...         self.sum = Variable(jnp.zeros(()))
        >>> @shard_map(mesh=mesh, in_specs=(P(), P("d")), out_specs=P())
        ... def add(t, x):
        ...     t.sum[...] += jax.lax.psum(x.sum(), "d")
        >>> t = Total(); add(t, jnp.ones(jax.device_count() * 2)); float(t.sum[...]) == jax.device_count() * 2
        True
    """
    if f is MISSING:
        return functools.partial(
            shard_map, mesh=mesh, in_specs=in_specs, out_specs=out_specs, axis_names=axis_names,
            check_vma=check_vma, graph=graph, graph_updates=graph_updates,
        )
    graph_mode = resolve_graph_mode(graph)
    updates = resolve_graph_updates(graph_updates)
    keys = [_spec(k) for k in prefix_values(in_specs, out_specs)]
    keys = list(dict.fromkeys(keys))
    in_prefix = tuple(in_specs) if isinstance(in_specs, list) else in_specs
    bound_f = f
    f, bound_self = unbind(f)
    if bound_self is not None:  # a bound method's object is replicated
        in_prefix = shift_prefix(in_prefix, PartitionSpec())

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        args = resolve_kwargs(bound_f, args, kwargs)
        if bound_self is not None:
            args = (bound_self, *args)
        lifted = lift(args, {}, prefix=in_prefix, graph=graph_mode, graph_updates=updates,
                      transform="shard_map", prefix_name="in_specs")
        lifted.var_specs = [_spec(s) for s in lifted.var_specs]
        lifted.leaf_specs = [_spec(s) for s in lifted.leaf_specs]
        out_prefix = jax.tree_util.tree_map(_spec, out_specs, is_leaf=lambda x: x is None or isinstance(x, PartitionSpec))
        pure = mapped_pure(
            lifted, f, out_prefix, keys, transform="shard_map", in_name="in_specs", out_name="out_specs",
        )
        mapped = jax.shard_map(
            pure,
            mesh=mesh,
            in_specs=(list(lifted.var_specs), list(lifted.leaf_specs)),
            out_specs=(tuple(keys), PartitionSpec()),
            axis_names=axis_names,
            check_vma=check_vma,
        )
        groups, box = mapped(lifted.values(), lifted.leaves)
        return unpack_mapped(lifted, groups, box)

    return wraps(bound_f, wrapper)
