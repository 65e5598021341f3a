"""Device mesh ``(data, fsdp, tensor)``, logical axis rules, and shardings of states.

Parameters name their dimensions logically (``('embed', 'mlp')``); ``LOGICAL_AXIS_RULES``
maps those names to mesh axes: the batch is split over ``data`` and ``fsdp``, weights
over ``fsdp`` (their ``embed`` dimension, ZeRO-3 style) and ``tensor`` (heads, MLP
hidden units, vocabulary; Megatron style). A dimension that the mesh axes do not divide
(one key/value head on 4 tensor devices) is replicated instead of failing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from plait import nnx

from ._errors import ConfigError

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

LOGICAL_AXIS_RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    ("batch", BATCH_AXES),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("mlp", "tensor"),
    ("head_dim", None),
    ("norm", None),
)


def make_mesh(data: int = -1, fsdp: int = 1, tensor: int = 1, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A ``(data, fsdp, tensor)`` mesh; one size may be -1 (all remaining devices).

    Example:
      >>> mesh = make_mesh(data=-1, fsdp=1, tensor=1, devices=jax.devices()[:1])
      >>> dict(mesh.shape)
      {'data': 1, 'fsdp': 1, 'tensor': 1}
    """
    devices = list(devices if devices is not None else jax.devices())
    sizes = [data, fsdp, tensor]
    if sizes.count(-1) > 1 or any(s == 0 or s < -1 for s in sizes):
        raise ConfigError(f"Mesh sizes must be positive with at most one -1, got data={data}, fsdp={fsdp}, tensor={tensor}.")
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if len(devices) % known:
            raise ConfigError(f"{len(devices)} devices cannot be split into fsdp*tensor*... = {known} groups.")
        sizes[sizes.index(-1)] = len(devices) // known
    if math.prod(sizes) != len(devices):
        raise ConfigError(
            f"Mesh data={sizes[0]} x fsdp={sizes[1]} x tensor={sizes[2]} = {math.prod(sizes)} devices, "
            f"but {len(devices)} are available.\nFix: make the product equal the device count "
            "(one size may be -1)."
        )
    return Mesh(np.asarray(devices).reshape(sizes), MESH_AXES)


def _fit_to_shape(spec: PartitionSpec, shape: tuple[int, ...], mesh: Mesh) -> PartitionSpec:
    """``spec`` with every entry whose mesh axes do not divide the dimension replaced by None."""
    entries = list(spec) + [None] * (len(shape) - len(spec))
    fitted = []
    for dim, entry in zip(shape, entries, strict=True):
        axes = (entry,) if isinstance(entry, str) else tuple(entry or ())
        size = math.prod(mesh.shape[a] for a in axes)
        fitted.append(entry if axes and dim % size == 0 else None)
    return PartitionSpec(*fitted)


def _is_variable(x) -> bool:
    return isinstance(x, nnx.Variable)


def partition_specs(state: nnx.State, mesh: Mesh, rules=LOGICAL_AXIS_RULES) -> nnx.State:
    """Mesh PartitionSpecs (inside the Variables) of a real or abstract state."""
    with nnx.logical_axis_rules(rules):
        specs = nnx.get_partition_spec(state)

    def fit(spec_var, value_var):
        spec = spec_var.get_value() if _is_variable(spec_var) else spec_var
        value = value_var.get_value() if _is_variable(value_var) else value_var
        fitted = _fit_to_shape(spec if spec is not None else PartitionSpec(), tuple(value.shape), mesh)
        return spec_var.replace(fitted) if _is_variable(spec_var) else fitted

    return jax.tree.map(fit, specs, state, is_leaf=_is_variable)


def named_shardings(state: nnx.State, mesh: Mesh, rules=LOGICAL_AXIS_RULES) -> nnx.State:
    """``NamedSharding`` of every leaf of ``state`` (same structure)."""
    specs = partition_specs(state, mesh, rules)
    return jax.tree.map(
        lambda spec: NamedSharding(mesh, spec), specs, is_leaf=lambda x: isinstance(x, PartitionSpec)
    )


def _flat_by_path(state) -> dict[tuple, object]:
    leaves, _ = jax.tree_util.tree_flatten_with_path(state, is_leaf=_is_variable)
    return {tuple(str(nnx_key(k)) for k in path): leaf for path, leaf in leaves}


def nnx_key(entry) -> object:
    return getattr(entry, "key", getattr(entry, "idx", getattr(entry, "name", entry)))


def optimizer_shardings(opt_state: nnx.State, param_shardings: nnx.State, mesh: Mesh) -> nnx.State:
    """Shardings for an optimizer's state: a moment is placed like the parameter it tracks.

    Optax states hold subtrees shaped like the parameters (``mu/layers/0/attn/q_proj``);
    a leaf whose path ends with a parameter's path and has its shape gets that
    parameter's sharding, every other leaf (step counts) is replicated.
    """
    params = _flat_by_path(param_shardings)
    by_suffix = {path: sharding for path, sharding in params.items()}
    replicated = NamedSharding(mesh, PartitionSpec())

    def place(path, leaf):
        keys = tuple(str(nnx_key(k)) for k in path)
        value = leaf.get_value() if _is_variable(leaf) else leaf
        for start in range(len(keys)):
            sharding = by_suffix.get(keys[start:])
            if sharding is not None:
                spec = sharding.get_value().spec if _is_variable(sharding) else sharding.spec
                fitted = _fit_to_shape(spec, tuple(value.shape), mesh)
                out = NamedSharding(mesh, fitted)
                return leaf.replace(out) if _is_variable(leaf) else out
        return leaf.replace(replicated) if _is_variable(leaf) else replicated

    return jax.tree_util.tree_map_with_path(place, opt_state, is_leaf=_is_variable)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Batch rows split over ``data`` and ``fsdp``; the sequence axis whole."""
    return NamedSharding(mesh, PartitionSpec(BATCH_AXES, None))


def with_shardings(abstract, shardings):
    """``ShapeDtypeStruct`` leaves of ``abstract`` carrying the matching sharding."""
    return jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
        abstract,
        shardings,
    )
