"""Restoring a plait checkpoint: with or without a target, strict or partial."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from . import _layout, _orbax
from ._errors import CorruptCheckpointError
from ._paths import Path, show
from ._plan import Plan, Source, Target, apply_rules, flatten_target, match, sharding_lookup
from ._read import default_sharding, execute
from ._rules import KeyRule
from ._spec import Spec
from ._tree import iter_skeleton_leaves, rebuild, stored_path

__all__ = ["CheckpointInfo", "PartialRestore", "read_metadata", "restore"]


class PartialRestore(NamedTuple):
    """What ``restore(..., partial=True)`` returns.

    Attributes:
      tree: the target with every entry the checkpoint had filled in; the other
        leaves are the target's own (possibly abstract) leaves.
      restored: paths that were restored.
      missing: target paths the checkpoint lacks (left as they were).
      unused: checkpoint paths the target has no place for.
    """

    tree: Any
    restored: tuple[str, ...]
    missing: tuple[str, ...]
    unused: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class CheckpointInfo:
    """The JSON side of a checkpoint, readable without reading any array.

    Attributes:
      directory: the checkpoint directory.
      step: the step number (manager checkpoints) or None.
      metrics: the metrics saved with it (manager checkpoints).
      metadata: the user's ``metadata=`` dict.
      created: POSIX time of the save.
      entries: ``{path: "float32[3,4]"}`` for every leaf.
    """

    directory: str
    step: int | None
    metrics: Mapping[str, Any]
    metadata: Mapping[str, Any]
    created: float
    entries: Mapping[str, str]


def _load(directory: str, verify: bool) -> dict[str, Any]:
    record = _layout.read_marker(directory)
    _layout.verify_files(
        directory, record["files"], checksums=verify, algorithm=record["checksum"]
    )
    return record


def read_metadata(directory: str | os.PathLike) -> CheckpointInfo:
    """Reads a checkpoint's step, metrics, user metadata and entry list.

    Example:
      >>> import tempfile, os, numpy as np
      >>> from plait import checkpoint
      >>> path = checkpoint.save(os.path.join(tempfile.mkdtemp(), "c"), {"w": np.zeros(3)},
      ...                        metadata={"lr": 0.1})
      >>> info = checkpoint.read_metadata(path)
      >>> info.metadata, dict(info.entries)
      ({'lr': 0.1}, {'w': 'float64[3]'})
    """
    directory = os.path.abspath(os.fspath(directory))
    record = _layout.read_marker(directory)
    marker = os.path.join(directory, _layout.MARKER)
    entries = {
        show(leaf.path): leaf.spec.describe()
        for leaf in iter_skeleton_leaves(record["tree"], marker)
    }
    return CheckpointInfo(
        directory=directory,
        step=record.get("step"),
        metrics=record.get("metrics") or {},
        metadata=record.get("metadata") or {},
        created=float(record.get("created") or 0.0),
        entries=entries,
    )


def _sources(directory: str, record: Mapping[str, Any]) -> tuple[list[Source], Any, str | None]:
    """The checkpoint's entries, cross-checked against what Orbax recorded."""
    marker = os.path.join(directory, _layout.MARKER)
    leaves = list(iter_skeleton_leaves(record["tree"], marker))
    state_dir = os.path.join(directory, _layout.STATE)
    needs_arrays = any(leaf.node["t"] == "leaf" for leaf in leaves)
    structure = _orbax.read_structure(state_dir) if needs_arrays else None
    stored_meta = _orbax.flat_metadata(structure) if needs_arrays else {}
    sources = []
    for leaf in leaves:
        if leaf.node["t"] == "value":
            sources.append(
                Source(
                    leaf.path,
                    None,
                    leaf.spec,
                    leaf.spec,
                    "value",
                    value=leaf.node["v"],
                    variable=leaf.variable,
                )
            )
            continue
        stored = stored_path(leaf.path)
        meta = stored_meta.get(stored)
        if meta is None:
            raise CorruptCheckpointError(
                os.path.join(state_dir, "_METADATA"),
                f"the entry {show(leaf.path)} recorded in the commit marker is not in the Orbax tree",
            )
        stored_spec = Spec("array", tuple(int(d) for d in meta.shape), np.dtype(meta.dtype).name)
        sources.append(
            Source(
                leaf.path,
                stored,
                leaf.spec,
                stored_spec,
                leaf.node["kind"],
                impl=leaf.node.get("impl"),
                variable=leaf.variable,
                np_scalar=bool(leaf.node.get("np_scalar")),
            )
        )
    return sources, structure, state_dir if needs_arrays else None


def _self_target(source: Source, lookup: Any) -> Target:
    """The output a leaf gets when restoring without a target."""
    if source.origin == "value":
        return Target(source.path, None, source.spec, "python", python_type=type(source.value))
    if source.origin == "numpy":
        if source.np_scalar:
            return Target(
                source.path,
                None,
                source.spec,
                "npscalar",
                python_type=np.dtype(source.spec.dtype).type,
            )
        return Target(source.path, None, source.spec, "numpy")
    output = "key" if source.origin == "key" else "jax"
    return Target(source.path, None, source.spec, output, lookup(source.path) or default_sharding())


def restore(
    directory: str | os.PathLike,
    target: Any = None,
    *,
    partial: bool = False,
    shardings: Any = None,
    rules: Sequence[KeyRule] = (),
    verify: bool = True,
) -> Any:
    """Restores a checkpoint written by :func:`save` or a :class:`CheckpointManager`.

    Without a target the saved tree comes back as saved (containers, NumPy vs JAX
    arrays, PRNG keys, Python values, Variable types), each JAX array on this
    process's first device or on ``shardings``. With a target (real arrays, or an
    abstract tree from ``jax.eval_shape`` / ``nnx.eval_shape`` whose
    ``ShapeDtypeStruct`` leaves may carry ``.sharding``) the result has the target's
    structure and types, and every JAX array is read straight into the target's
    sharding, whatever the device count at save time. Target Variables keep their
    type and metadata; only their values are replaced.

    Args:
      directory: the checkpoint directory.
      target: the tree to restore into, or None.
      partial: restore only the entries the target and the checkpoint share, and
        return a :class:`PartialRestore` saying what was left out. Shape and dtype
        differences remain errors.
      shardings: one ``jax.sharding.Sharding`` for every array, or a pytree of
        shardings with the target's (or checkpoint's) structure; overrides the
        target's shardings.
      rules: adapter rules (:func:`rename`, :func:`transpose`, :func:`reshape`,
        :func:`cast`, :func:`split`, :func:`drop`) applied to the checkpoint's entries first.
      verify: check every file's CRC-32C against the manifest before reading (sizes
        are always checked).

    Returns:
      The restored tree, or a :class:`PartialRestore` when ``partial`` is True.

    Raises:
      IncompleteCheckpointError: no committed checkpoint at ``directory``.
      CorruptCheckpointError: a file is missing, truncated or altered (named).
      CheckpointMismatchError: the target and checkpoint differ (every path listed).

    Example:
      >>> import tempfile, os, jax, jax.numpy as jnp
      >>> from plait import checkpoint
      >>> path = checkpoint.save(os.path.join(tempfile.mkdtemp(), "c"), {"w": jnp.ones(3)})
      >>> abstract = jax.eval_shape(lambda: {"w": jnp.zeros(3)})
      >>> checkpoint.restore(path, abstract)["w"]
      Array([1., 1., 1.], dtype=float32)
    """
    directory = os.path.abspath(os.fspath(directory))
    record = _load(directory, verify)
    sources, structure, state_dir = _sources(directory, record)
    if target is None:
        if rules:
            raise TypeError("rules= need a target: restore(directory, target, rules=...).")
        lookup = sharding_lookup(shardings)
        pairs = [(_self_target(source, lookup), source) for source in sources]
        values = read_pairs(state_dir, structure, pairs)
        return rebuild(record["tree"], values.__getitem__)
    targets, treedef = flatten_target(target, shardings)
    sources = apply_rules(sources, rules, directory)
    plan = match(targets, sources, partial=partial, where=directory)
    return fill_target(state_dir, structure, plan, targets, treedef, partial=partial)


def read_pairs(
    state_dir: str | None, structure: Any, pairs: Sequence[tuple[Target, Source]]
) -> dict[Path, Any]:
    """Reads every paired entry with a checkpointer of its own (closed afterwards)."""
    checkpointer = _orbax.make_checkpointer(asynchronous=False)
    try:
        return execute(checkpointer, state_dir, structure, pairs)
    finally:
        checkpointer.close()


def fill_target(
    state_dir: str | None,
    structure: Any,
    plan: Plan,
    targets: Sequence[Target],
    treedef: Any,
    *,
    partial: bool,
) -> Any:
    """The target tree with the plan's entries read in (a PartialRestore when ``partial``)."""
    values = read_pairs(state_dir, structure, plan.pairs)
    tree = treedef.unflatten([values.get(t.path, t.leaf) for t in targets])
    if not partial:
        return tree
    return PartialRestore(
        tree,
        restored=tuple(show(t.path) for t, _ in plan.pairs),
        missing=tuple(show(t.path) for t in plan.missing),
        unused=tuple(show(s.path) for s in plan.unused),
    )
