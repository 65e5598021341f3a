"""Scale-out helpers: meshes from configs, sharded init, global batches, jax.distributed.

Everything here is a thin layer over JAX's own machinery (``jax.sharding.Mesh``,
``NamedSharding``, ``jax.jit`` with ``out_shardings``, ``jax.distributed``) and over the
sharding metadata of ``plait.core`` (``sharding_names`` on Variables, Linen's boxes), so
that one recipe works for plait.nnx, plait.linen and plain JAX code:

1. ``initialize_distributed()`` joins the processes of a multi-process run (a no-op for
   one process); call it before anything else touches JAX devices.
2. ``make_mesh({'data': -1, 'fsdp': 2, 'tensor': 1})`` builds the device mesh.
3. ``default_logical_rules()`` maps the logical axis names models use to those mesh axes.
4. ``sharded_init(init_fn, mesh, rules, key)`` builds the model/train state directly
   sharded (``eval_shape`` → ``abstract_shardings`` → ``jit`` with ``out_shardings``).
5. ``global_batch(local_batch, mesh)`` assembles the global batch from each process's
   rows (``process_batch_slice`` says which rows a process feeds).

The mesh axes, outermost first:

* ``data``: pure data parallelism (parameters replicated, batch split);
* ``fsdp``: data parallelism that also splits parameters and optimizer state along their
  ``embed`` dimension (ZeRO-3 / fully sharded data parallel);
* ``tensor``: model (tensor) parallelism, splitting ``mlp``, ``heads`` and ``vocab``.

See ``docs/scaling.md`` in the repository for the full recipe.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from ._graph import merge, split
from ._graphdef import is_graph_node
from ._sharding import LogicalRules, get_logical_axis_rules, logical_axis_rules
from ._sharding import logical_to_mesh_axes as _logical_to_mesh_axes
from ._variable import Variable

__all__ = [
    "BATCH_AXES",
    "abstract_shardings",
    "default_logical_rules",
    "global_batch",
    "initialize_distributed",
    "make_mesh",
    "process_batch_slice",
    "sharded_init",
]

# The mesh axes a batch dimension is split over (both are data-parallel axes).
BATCH_AXES: Final = ("data", "fsdp")

# Environment variables read by ``initialize_distributed`` when an argument is omitted.
ENV_NUM_PROCESSES: Final = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID: Final = "JAX_PROCESS_ID"
ENV_COORDINATOR: Final = "JAX_COORDINATOR_ADDRESS"

# Metadata keys holding per-dimension names (plait / Flax 0.12, then Flax's newer key).
_NAME_KEYS: Final = ("sharding_names", "out_sharding")


# --------------------------------------------------------------------------- mesh


def _mesh_items(axes: Any) -> list[tuple[str, int]]:
    """``(name, size)`` pairs from a Mapping, a ConfigDict-like object or pairs."""
    if isinstance(axes, Mapping) or hasattr(axes, "items"):
        items = list(axes.items())
    elif isinstance(axes, Sequence) and not isinstance(axes, str):
        items = list(axes)
    else:
        raise TypeError(
            f"make_mesh expects a mapping of mesh axis names to sizes, e.g. "
            f"{{'data': -1, 'fsdp': 2, 'tensor': 1}}, but got a {type(axes).__name__}."
        )
    pairs = []
    for item in items:
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise TypeError(
                f"make_mesh: the mesh entry {item!r} is not a (name, size) pair. Pass a "
                "mapping such as {'data': -1, 'tensor': 2}."
            )
        name, size = item
        if not isinstance(name, str) or not name:
            raise TypeError(f"make_mesh: mesh axis names must be non-empty strings, got {name!r}.")
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
            raise TypeError(
                f"make_mesh: the size of mesh axis {name!r} must be an int (-1 for 'the rest "
                f"of the devices'), got {size!r} of type {type(size).__name__}."
            )
        if size == 0 or size < -1:
            raise ValueError(
                f"make_mesh: mesh axis {name!r} has size {size}; sizes are positive, or -1 for "
                "'the rest of the devices'."
            )
        pairs.append((name, int(size)))
    if not pairs:
        raise ValueError("make_mesh: the mesh needs at least one axis, e.g. {'data': -1}.")
    names = [n for n, _ in pairs]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"make_mesh: mesh axes {duplicated} are given more than once.")
    return pairs


def make_mesh(
    axes: Any,
    devices: Sequence[Any] | None = None,
    *,
    axis_types: AxisType | Sequence[AxisType] = AxisType.Auto,
) -> Mesh:
    """A device mesh from a config mapping mesh axis names to sizes.

    Axes keep the order given (outermost first: put ``tensor`` last so that it spans the
    devices that talk fastest). At most one size may be ``-1``: that axis gets all the
    devices the others leave. Axes of size 1 are kept, so shardings naming them stay valid
    on every mesh. Note that ``ml_collections.ConfigDict`` lists its keys sorted by name;
    ``data < fsdp < tensor`` is the intended order.

    Args:
      axes: a mapping (dict, ConfigDict...) or a sequence of ``(name, size)`` pairs.
      devices: the devices to use (default: ``jax.devices()``, every process's devices in
        process order, so that a data-parallel axis gives each process a contiguous block
        of the global batch).
      axis_types: ``AxisType.Auto`` (default: ``jit`` propagates shardings; the recipe
        this module implements) or ``AxisType.Explicit``; one type or one per axis.

    Returns:
      A ``jax.sharding.Mesh`` with the given axis names.

    Raises:
      TypeError: an entry is not a ``(str, int)`` pair.
      ValueError: sizes do not multiply to the number of devices, or two sizes are ``-1``.

    Example:
      >>> import jax
      >>> from plait.core.distributed import make_mesh
      >>> mesh = make_mesh({'data': -1, 'fsdp': 2, 'tensor': 1})  # 8 devices
      >>> dict(mesh.shape)
      {'data': 4, 'fsdp': 2, 'tensor': 1}
    """
    pairs = _mesh_items(axes)
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("make_mesh: `devices` is empty; pass at least one device.")
    wildcards = [n for n, s in pairs if s == -1]
    if len(wildcards) > 1:
        raise ValueError(
            f"make_mesh: mesh axes {wildcards} all have size -1; at most one axis may take "
            "'the rest of the devices'."
        )
    known = math.prod(s for _, s in pairs if s != -1)
    if wildcards:
        if len(devices) % known:
            raise ValueError(
                f"make_mesh: the fixed axes {dict(pairs)} use {known} devices, which does "
                f"not divide the {len(devices)} devices, so -1 for {wildcards[0]!r} has no "
                "integer size. Change the fixed sizes."
            )
        pairs = [(n, len(devices) // known if s == -1 else s) for n, s in pairs]
    elif known != len(devices):
        raise ValueError(
            f"make_mesh: the mesh {dict(pairs)} needs {known} devices but {len(devices)} are "
            "given. Make the sizes multiply to the device count, or set one of them to -1."
        )
    names = tuple(n for n, _ in pairs)
    sizes = tuple(s for _, s in pairs)
    if isinstance(axis_types, AxisType):
        types = (axis_types,) * len(names)
    else:
        types = tuple(axis_types)
        if len(types) != len(names):
            raise ValueError(
                f"make_mesh: {len(types)} axis_types for the {len(names)} axes {names}."
            )
    return jax.make_mesh(sizes, names, axis_types=types, devices=devices)


def default_logical_rules() -> tuple[tuple[str, Any], ...]:
    """Logical axis rules for a ``data`` / ``fsdp`` / ``tensor`` mesh.

    The logical names a model gives its array dimensions, and where they go:

    ======== ===================== ==============================================
    name     mesh axes             meaning
    ======== ===================== ==============================================
    batch    ``('data', 'fsdp')``  examples of a batch (activations)
    length   replicated            sequence positions
    embed    ``fsdp``              model width (parameters split by FSDP)
    mlp      ``tensor``            hidden width of feed-forward layers
    heads    ``tensor``            attention heads
    kv       replicated            per-head feature size
    vocab    ``tensor``            vocabulary / classes
    conv_in  replicated            input channels of a convolution kernel
    conv_out ``tensor``            output channels of a convolution kernel
    layers   replicated            stacked (scanned) layers
    norm     replicated            normalization scales and biases
    ======== ===================== ==============================================

    The rules are priorities (Linen's resolution, used by ``abstract_shardings``): an
    activation named ``('batch', 'length', 'embed')`` takes ``('data', 'fsdp')`` for
    ``batch`` and leaves ``embed`` replicated, because ``fsdp`` is already used; a kernel
    named ``('embed', 'mlp')`` is split ``('fsdp', 'tensor')``. A mesh without some of
    these axes still works if they have size 1 (``make_mesh`` keeps size-1 axes).

    Example:
      >>> from plait.core import logical_to_mesh_axes
      >>> from plait.core.distributed import default_logical_rules
      >>> logical_to_mesh_axes(('batch', 'length', 'embed'), default_logical_rules())
      P(('data', 'fsdp'), None, None)
      >>> logical_to_mesh_axes(('embed', 'mlp'), default_logical_rules())
      P('fsdp', 'tensor')
    """
    return (
        ("batch", BATCH_AXES),
        ("length", None),
        ("embed", "fsdp"),
        ("mlp", "tensor"),
        ("heads", "tensor"),
        ("kv", None),
        ("vocab", "tensor"),
        ("conv_in", None),
        ("conv_out", "tensor"),
        ("layers", None),
        ("norm", None),
    )


# --------------------------------------------------------------------------- shardings


def _is_box(x: Any) -> bool:
    """A Linen-style metadata box (``Partitioned``, ``LogicallyPartitioned``, ...)."""
    return (
        not isinstance(x, Variable)
        and callable(getattr(x, "to_nnx_metadata", None))
        and callable(getattr(x, "replace_boxed", None))
    )


def _is_annotated(x: Any) -> bool:
    return isinstance(x, Variable) or _is_box(x)


def _names_of(metadata: Mapping[str, Any]) -> tuple[Any, ...] | None:
    for key in _NAME_KEYS:
        names = metadata.get(key)
        if names:
            return tuple(names)
    return None


def _spec_for(
    names: tuple[Any, ...],
    own_rules: Any,
    shape: tuple[int, ...],
    mesh: Mesh,
    rules: LogicalRules,
    where: str,
) -> PartitionSpec:
    """Resolves per-dimension names to a PartitionSpec valid for ``shape`` on ``mesh``."""
    if len(names) > len(shape):
        raise ValueError(
            f"The value at {where} has shape {shape} but {len(names)} sharding names "
            f"{names}; give one name (or None) per dimension."
        )
    # A Variable's own rules come first; mesh axis names map to themselves, so plain
    # mesh-axis annotations (Linen's ``Partitioned``, nnx names without rules) work too.
    all_rules = (
        tuple(tuple(r) for r in (own_rules or ()))
        + tuple(tuple(r) for r in rules)
        + tuple((axis, axis) for axis in mesh.axis_names)
    )
    known = {logical for logical, _ in all_rules}
    for entry in names:
        for name in entry if isinstance(entry, tuple) else (entry,):
            if isinstance(name, str) and name not in known:
                raise ValueError(
                    f"The value at {where} names the axis {name!r} (names {names}), which is "
                    f"neither a mesh axis {tuple(mesh.axis_names)} nor a logical name of the "
                    f"rules {[r[0] for r in rules]}. Add a rule for it, e.g. "
                    f"({name!r}, None) to replicate it, or fix the name."
                )
    spec = _logical_to_mesh_axes(names, all_rules)
    for dim, entry in enumerate(spec):
        axes = entry if isinstance(entry, tuple) else (entry,)
        unknown = [a for a in axes if a is not None and a not in mesh.shape]
        if unknown:
            raise ValueError(
                f"The value at {where} resolves to {spec}, which names {unknown}: not axes "
                f"of the mesh {dict(mesh.shape)}. Fix the rules (map them to mesh axes or "
                "None) or add the axes to the mesh (size 1 is fine)."
            )
        ways = math.prod(mesh.shape[a] for a in axes if a is not None)
        if shape[dim] % ways:
            raise ValueError(
                f"The value at {where} has shape {shape}; dimension {dim} ({shape[dim]}) is "
                f"named {names[dim]!r}, which resolves to mesh axes {entry!r} of total size "
                f"{ways}, and {ways} does not divide {shape[dim]}. Choose sizes divisible "
                "by the mesh axes, a smaller mesh axis, or a rule that replicates it."
            )
    return spec


def abstract_shardings(abstract_tree: Any, mesh: Mesh, rules: LogicalRules | None = None) -> Any:
    """The ``NamedSharding`` of every value of a (usually abstract) tree.

    Reads the per-dimension names of plait Variables (``sharding_names`` metadata, e.g.
    set by ``with_partitioning``) and of Linen boxes (``Partitioned``,
    ``LogicallyPartitioned``), resolves them through ``rules`` (logical names; a
    Variable's own ``sharding_rules`` first) with the priority semantics of
    ``logical_to_mesh_axes`` (a mesh axis splits at most one dimension of an array), and
    returns the same tree with each Variable / box holding a ``NamedSharding`` instead of
    its value. Plain arrays and ``ShapeDtypeStruct`` leaves without names are
    replicated; leaves without a shape become ``None``. The result fits ``jax.jit``'s
    ``out_shardings`` / ``in_shardings`` for values of that structure.

    Names must be logical names of ``rules`` or mesh axes: an unknown name (usually a
    typo) is an error, as is a dimension the resolved mesh axes do not divide.

    Args:
      abstract_tree: a pytree, typically from ``jax.eval_shape`` (a State of Variables,
        a Linen variables dict with boxes, a train state...).
      mesh: the device mesh.
      rules: logical axis rules; default: the active ones (``logical_axis_rules``).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from plait.core import Param, State
      >>> from plait.core.distributed import abstract_shardings, default_logical_rules, make_mesh
      >>> mesh = make_mesh({'data': 2, 'fsdp': 2, 'tensor': 2})
      >>> state = State({'w': Param(jax.ShapeDtypeStruct((8, 4), jnp.float32),
      ...                           sharding_names=('embed', 'mlp'))})
      >>> abstract_shardings(state, mesh, default_logical_rules())['w'].value.spec
      P('fsdp', 'tensor')
    """
    if rules is None:
        rules = get_logical_axis_rules()

    def one(path: Any, x: Any) -> Any:
        where = jax.tree_util.keystr(path) or "<root>"
        if isinstance(x, Variable):
            value = x.get_raw_value()
            metadata = x.get_metadata()
        elif _is_box(x):
            # The raw value: ``unbox()`` may apply a sharding constraint.
            value = x.value if hasattr(x, "value") else x.unbox()
            metadata = x.to_nnx_metadata()
        else:
            value, metadata = x, {}
        shape = getattr(value, "shape", None)
        if shape is None:
            sharding = None
        else:
            names = _names_of(metadata)
            spec = (
                PartitionSpec()
                if names is None
                else _spec_for(
                    names, metadata.get("sharding_rules"), tuple(shape), mesh, rules, where
                )
            )
            sharding = NamedSharding(mesh, spec)
        if isinstance(x, Variable):
            return x.replace(sharding)
        if _is_box(x):
            return x.replace_boxed(sharding)
        return sharding

    return jax.tree_util.tree_map_with_path(one, abstract_tree, is_leaf=_is_annotated)


def sharded_init(
    init_fn: Callable[..., Any],
    mesh: Mesh,
    rules: LogicalRules | None = None,
    *args: Any,
) -> Any:
    """Runs ``init_fn(*args)`` under ``jit`` so that its result is born sharded.

    The steps, which you can also write out by hand: ``jax.eval_shape`` gives the
    abstract result; ``abstract_shardings(abstract, mesh, rules)`` turns its sharding
    metadata into ``NamedSharding``\\ s; ``jax.jit(init_fn, out_shardings=...)`` then
    computes every value directly on the devices that own it (no full copy on one
    device). The rules are active while ``init_fn`` is traced.

    ``init_fn`` may return any pytree whose leaves carry sharding metadata (a core
    ``State`` of Variables, a Linen variables dict with boxes, a train state), or a graph
    node such as an ``nnx.Module``, or a tuple / list / dict with graph nodes among its
    items (e.g. ``(model, optimizer)``): those are split together inside the ``jit`` and
    merged back here, so you get the objects themselves, references shared between them
    intact, with sharded Variables.

    Args:
      init_fn: builds the model / state from ``args`` (typically a PRNG key). Create
        ``nnx.Rngs`` inside it from the key, not outside.
      mesh: the device mesh.
      rules: logical axis rules; default: the active ones.
      *args: arrays (or pytrees of arrays) passed to ``init_fn``.

    Returns:
      What ``init_fn`` returns, with every array sharded on ``mesh``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from plait.core import Param, State
      >>> from plait.core.distributed import default_logical_rules, make_mesh, sharded_init
      >>> mesh = make_mesh({'data': -1, 'fsdp': 2, 'tensor': 2})
      >>> def init(key):
      ...   w = jax.random.normal(key, (8, 16))
      ...   return State({'w': Param(w, sharding_names=('embed', 'mlp'))})
      >>> state = sharded_init(init, mesh, default_logical_rules(), jax.random.key(0))
      >>> state['w'].value.sharding.spec, state['w'].value.addressable_shards[0].data.shape
      (P('fsdp', 'tensor'), (4, 8))
    """
    if rules is None:
        rules = get_logical_axis_rules()
    rebuild: list[Callable[[Any], Any]] = []

    def pure_init(*inner_args: Any) -> Any:
        out, how = _split_graph_nodes(init_fn(*inner_args))
        rebuild.append(how)
        return out

    with logical_axis_rules(rules):
        abstract = jax.eval_shape(pure_init, *args)
        shardings = abstract_shardings(abstract, mesh, rules)
        out = jax.jit(pure_init, out_shardings=shardings)(*args)
    return rebuild[-1](out)


def _split_graph_nodes(out: Any) -> tuple[Any, Callable[[Any], Any]]:
    """``(pytree, rebuild)``: graph nodes (the result, or its top-level items) as State.

    The graph nodes of a tuple / list / dict result are split together (one reference
    numbering, so objects shared between them stay shared); its other items stay plain
    pytrees.
    """
    if is_graph_node(out):
        graphdef, state = split(out)
        return state, lambda state: merge(graphdef, state)
    if type(out) not in (tuple, list, dict):
        return out, lambda tree: tree
    items = dict(out) if isinstance(out, dict) else dict(enumerate(out))
    nodes = {k: v for k, v in items.items() if is_graph_node(v)}
    if not nodes:
        return out, lambda tree: tree
    rest = {k: v for k, v in items.items() if k not in nodes}
    graphdef, state = split(nodes)
    kind = type(out)

    def rebuild(tree: Any) -> Any:
        merged = {**tree[1], **merge(graphdef, tree[0])}
        if kind is dict:
            return {k: merged[k] for k in items}
        return kind(merged[i] for i in range(len(items)))

    return (state, rest), rebuild


# --------------------------------------------------------------------------- batches


def _default_batch_spec(mesh: Mesh) -> PartitionSpec:
    axes = tuple(a for a in BATCH_AXES if a in mesh.axis_names)
    if not axes:
        return PartitionSpec()
    return PartitionSpec(axes[0] if len(axes) == 1 else axes)


def _local_blocks(mesh: Mesh, entry: Any) -> tuple[int, list[int]]:
    """(blocks along one array dimension, sorted blocks this process's devices hold)."""
    axes = [a for a in (entry if isinstance(entry, tuple) else (entry,)) if a is not None]
    if not axes:
        return 1, [0]
    for a in axes:
        if a not in mesh.shape:
            raise ValueError(
                f"The batch PartitionSpec names {a!r}, which is not an axis of the mesh "
                f"{dict(mesh.shape)}."
            )
    sizes = [mesh.shape[a] for a in axes]
    positions = [mesh.axis_names.index(a) for a in axes]
    me = jax.process_index()
    blocks = set()
    for index in np.ndindex(*mesh.devices.shape):
        if mesh.devices[index].process_index == me:
            coords = [index[p] for p in positions]
            blocks.add(int(np.ravel_multi_index(coords, sizes)))
    return math.prod(sizes), sorted(blocks)


def process_batch_slice(
    global_batch_size: int, mesh: Mesh, spec: PartitionSpec | None = None
) -> slice:
    """The rows of each global batch that this process must feed to ``global_batch``.

    With several processes every process loads only its rows; with one process this is
    ``slice(0, global_batch_size)``.

    Args:
      global_batch_size: rows of the global batch.
      mesh: the device mesh.
      spec: how the batch is split; default: dimension 0 over the mesh's ``data`` and
        ``fsdp`` axes (those it has).

    Raises:
      ValueError: the batch does not split evenly over the mesh, or this process's
        devices do not hold one contiguous block of rows (build the mesh with the default
        device order).

    Example:
      >>> from plait.core.distributed import make_mesh, process_batch_slice
      >>> process_batch_slice(64, make_mesh({'data': -1}))  # one process
      slice(0, 64, None)
    """
    spec = _default_batch_spec(mesh) if spec is None else spec
    entry = spec[0] if len(spec) else None
    total, mine = _local_blocks(mesh, entry)
    if global_batch_size % total:
        raise ValueError(
            f"A global batch of {global_batch_size} rows does not split into the {total} "
            f"shards of mesh axes {entry!r}; use a multiple of {total}."
        )
    if mine != list(range(mine[0], mine[0] + len(mine))):
        raise ValueError(
            f"This process (index {jax.process_index()}) holds batch shards {mine} of "
            f"{total}, which are not contiguous; build the mesh from jax.devices() in their "
            "default (process-major) order, e.g. with make_mesh(...)."
        )
    rows = global_batch_size // total
    return slice(mine[0] * rows, (mine[-1] + 1) * rows)


def global_batch(local_batch: Any, mesh: Mesh, spec: PartitionSpec | None = None) -> Any:
    """Assembles global ``jax.Array``\\ s from each process's part of a batch.

    Every process calls it with its own rows (``process_batch_slice`` says which); the
    result is the global batch, split over the mesh by ``spec``, built with
    ``jax.make_array_from_process_local_data``. With one process the local batch is the
    global batch.

    Args:
      local_batch: a pytree of host arrays (NumPy or JAX), this process's rows.
      mesh: the device mesh.
      spec: the PartitionSpec of every leaf; default: dimension 0 over the mesh's
        ``data`` and ``fsdp`` axes (those it has), the rest replicated.

    Raises:
      ValueError: a leaf has fewer dimensions than ``spec``, or its rows do not split
        evenly over this process's devices.

    Example:
      >>> import numpy as np
      >>> from plait.core.distributed import global_batch, make_mesh
      >>> mesh = make_mesh({'data': 4, 'fsdp': 2})
      >>> batch = global_batch({'x': np.ones((16, 3), np.float32)}, mesh)
      >>> batch['x'].shape, batch['x'].sharding.spec, batch['x'].addressable_shards[0].data.shape
      ((16, 3), P(('data', 'fsdp'),), (2, 3))
    """
    spec = _default_batch_spec(mesh) if spec is None else spec
    per_dim = [_local_blocks(mesh, entry) for entry in spec]  # checks the axis names too
    sharding = NamedSharding(mesh, spec)

    def one(path: Any, x: Any) -> jax.Array:
        shape = tuple(np.shape(x))
        where = jax.tree_util.keystr(path) or "<root>"
        if len(shape) < len(spec):
            raise ValueError(
                f"The batch leaf at {where} has shape {shape}, fewer dimensions than the "
                f"batch PartitionSpec {spec}."
            )
        global_shape = list(shape)
        for dim, (total, mine) in enumerate(per_dim):
            if shape[dim] % len(mine):
                raise ValueError(
                    f"The batch leaf at {where} has {shape[dim]} entries along dimension "
                    f"{dim}, but this process's devices hold {len(mine)} of its {total} "
                    f"shards (mesh axes {spec[dim]!r}); use a multiple of {len(mine)} per "
                    "process."
                )
            global_shape[dim] = shape[dim] // len(mine) * total
        return jax.make_array_from_process_local_data(sharding, x, tuple(global_shape))

    return jax.tree_util.tree_map_with_path(one, local_batch)


# --------------------------------------------------------------------------- processes


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"The environment variable {name}={raw!r} is not an integer.") from None


def initialize_distributed(
    num_processes: int | None = None,
    process_id: int | None = None,
    coordinator: str | None = None,
    *,
    initialization_timeout: int = 300,
) -> bool:
    """Joins a multi-process JAX run (``jax.distributed.initialize``); no-op for one process.

    Each argument left ``None`` is read from the environment: ``JAX_NUM_PROCESSES``,
    ``JAX_PROCESS_ID``, ``JAX_COORDINATOR_ADDRESS`` (``host:port`` of process 0, which
    every process can reach). With nothing set, or one process, nothing happens. The CPU
    collectives are set to gloo (unless another implementation is configured) so that
    CPU-only processes can talk; that setting does not affect GPUs or TPUs. Call this
    before anything else uses JAX devices. On managed clusters (SLURM, TPU pods) you can
    also call ``jax.distributed.initialize()`` yourself and let JAX detect the cluster.

    Args:
      num_processes: total number of processes.
      process_id: this process's index, ``0 <= process_id < num_processes``.
      coordinator: ``host:port`` of the coordinator (process 0 listens there).
      initialization_timeout: seconds to wait for every process to join.

    Returns:
      True when this call initialized ``jax.distributed``; False for a single process or
      when it was already initialized with the same number of processes.

    Raises:
      ValueError: inconsistent or missing settings, or an already initialized runtime
        with another process count.

    Example:
      >>> from plait.core.distributed import initialize_distributed
      >>> initialize_distributed(num_processes=1)  # a single process: nothing to join
      False
    """
    if num_processes is None:
        num_processes = _env_int(ENV_NUM_PROCESSES)
    if process_id is None:
        process_id = _env_int(ENV_PROCESS_ID)
    if coordinator is None:
        coordinator = os.environ.get(ENV_COORDINATOR) or None
    if num_processes is None:
        if coordinator is not None or process_id is not None:
            raise ValueError(
                f"A coordinator ({coordinator!r}) or process id ({process_id!r}) is set but "
                f"not the number of processes; pass num_processes= (or set "
                f"{ENV_NUM_PROCESSES})."
            )
        return False
    if num_processes < 1:
        raise ValueError(f"num_processes must be at least 1, got {num_processes}.")
    if num_processes == 1:
        return False
    if process_id is None or not 0 <= process_id < num_processes:
        raise ValueError(
            f"process_id must be in [0, {num_processes}) for a run of {num_processes} "
            f"processes, got {process_id!r}; pass process_id= (or set {ENV_PROCESS_ID})."
        )
    host, _, port = (coordinator or "").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(
            f"The coordinator address must be 'host:port' (process 0's address, reachable "
            f"by every process), got {coordinator!r}; pass coordinator= (or set "
            f"{ENV_COORDINATOR})."
        )
    if jax.distributed.is_initialized():
        if jax.process_count() != num_processes:
            raise ValueError(
                f"jax.distributed is already initialized with {jax.process_count()} "
                f"processes; cannot re-initialize it for {num_processes}."
            )
        return False
    if jax.config.jax_cpu_collectives_implementation in (None, "", "none"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator,
        num_processes=num_processes,
        process_id=process_id,
        initialization_timeout=initialization_timeout,
    )
    return True
