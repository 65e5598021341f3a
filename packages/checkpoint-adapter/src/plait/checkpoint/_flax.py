"""Reading checkpoints that Flax programs wrote with Orbax, into plait targets.

Layouts understood (all plain Orbax PyTree checkpoints, e.g. from
``ocp.StandardCheckpointer().save(path, nnx.state(model))``):

* NNX state as a nested dict of arrays (``nnx.to_pure_dict`` / current Flax), or
  with every leaf wrapped as ``{'value': array}`` (the older ``VariableState``
  layout); both may use integer-named levels (``layers/0/...``).
* Linen variables ``{'params': {...}, 'batch_stats': {...}}``, a bare params tree,
  and a ``TrainState`` dict (``{'step', 'params', 'opt_state', ...}``), whose
  params may themselves be wrapped in ``{'params': ...}``.

The checkpoint's layout is aligned to the target automatically: candidate
alignments (as is; inside ``params``; inside ``params/params``; keeping the
``params`` subtree; merging Linen collections into one NNX-style tree) are tried
in that order and the first that accounts for every target entry wins, after the
adapter rules are applied. Entries outside the chosen subtree (an optimizer state
when you restore parameters) are ignored; inside it, restore is as strict as
:func:`restore`.
"""

from __future__ import annotations

import collections
import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import _orbax
from ._errors import CheckpointMismatchError, IncompleteCheckpointError
from ._paths import Path, show
from ._plan import Source, apply_rules, flatten_target, match
from ._restore import fill_target
from ._rules import KeyRule
from ._spec import Spec

__all__ = ["load_flax_checkpoint"]

LINEN_COLLECTIONS = ("params", "batch_stats", "cache", "intermediates", "perturbations")


_ORBAX_EXPLANATION = (
    "load_flax_checkpoint reads an Orbax PyTree checkpoint: a directory with a _METADATA "
    "file (what StandardCheckpointer / PyTreeCheckpointer write), or a step directory with "
    "one such item. A save Orbax did not finish is left under a '.orbax-checkpoint-tmp' name."
)


def _find_item_directory(path: str) -> str:
    """The directory holding Orbax's ``_METADATA``: ``path`` or its single item subdirectory."""
    if os.path.isfile(os.path.join(path, "_METADATA")):
        return path
    if not os.path.isdir(path):
        raise IncompleteCheckpointError(path, "the directory does not exist", _ORBAX_EXPLANATION)
    items = sorted(
        name
        for name in os.listdir(path)
        if os.path.isfile(os.path.join(path, name, "_METADATA"))
        and ".orbax-checkpoint-tmp" not in name
    )
    if len(items) == 1:
        return os.path.join(path, items[0])
    found = sorted(os.listdir(path))
    if any(".orbax-checkpoint-tmp" in name for name in found) and not items:
        raise IncompleteCheckpointError(
            path, "only an unfinished Orbax temporary directory is there", _ORBAX_EXPLANATION
        )
    reason = "no Orbax PyTree metadata (_METADATA) here or in one item subdirectory"
    if len(items) > 1:
        reason = f"several Orbax items {items}; pass the item's directory"
    raise IncompleteCheckpointError(path, f"{reason} (found {found})", _ORBAX_EXPLANATION)


def _foreign_sources(structure: Any) -> list[Source]:
    flat = _orbax.flat_metadata(structure)
    children: dict[Path, set[str]] = collections.defaultdict(set)
    for stored in flat:
        for depth in range(len(stored)):
            children[stored[:depth]].add(stored[depth])
    sources = []
    for stored, meta in flat.items():
        path = stored
        if len(stored) > 1 and stored[-1] == "value" and len(children[stored[:-1]]) == 1:
            path = stored[:-1]  # {'value': array}: the older nnx VariableState layout
        dtype = getattr(meta, "dtype", None)
        shape = getattr(meta, "shape", None)
        if dtype is None or shape is None:
            spec = Spec("value", None, type(meta).__name__)
            sources.append(Source(path, stored, spec, spec, "orbax_other"))
            continue
        spec = Spec("array", tuple(int(d) for d in shape), np.dtype(dtype).name)
        origin = "orbax_scalar" if type(meta).__name__ == "ScalarMetadata" else "orbax"
        sources.append(Source(path, stored, spec, spec, origin))
    return sources


@dataclasses.dataclass(frozen=True)
class _Alignment:
    name: str
    remap: Callable[[Path], tuple[Path, str | None] | None]


def _subtree(select: Path, keep: Path) -> Callable[[Path], tuple[Path, None] | None]:
    def remap(path: Path) -> tuple[Path, None] | None:
        if path[: len(select)] != select:
            return None
        return (*keep, *path[len(select) :]), None

    return remap


def _merge_collections(inside: Path) -> Callable[[Path], tuple[Path, str] | None]:
    def remap(path: Path) -> tuple[Path, str] | None:
        if path[: len(inside)] != inside or len(path) <= len(inside) + 1:
            return None
        collection = path[len(inside)]
        if collection not in LINEN_COLLECTIONS:
            return None
        return path[len(inside) + 1 :], collection

    return remap


_ALIGNMENTS = (
    _Alignment("as saved", lambda path: (path, None)),
    _Alignment("inside 'params'", _subtree(("params",), ())),
    _Alignment("inside 'params/params'", _subtree(("params", "params"), ())),
    _Alignment("the 'params' subtree", _subtree(("params",), ("params",))),
    _Alignment("'params/params' as 'params'", _subtree(("params", "params"), ("params",))),
    _Alignment("Linen collections merged (NNX layout)", _merge_collections(())),
    _Alignment("Linen collections inside 'params' merged", _merge_collections(("params",))),
)


def _aligned(sources: Sequence[Source], alignment: _Alignment) -> list[Source]:
    out = []
    for source in sources:
        mapped = alignment.remap(source.path)
        if mapped is None:
            continue
        path, collection = mapped
        variable = {"collection": collection} if collection is not None else None
        out.append(dataclasses.replace(source, path=path, variable=variable))
    return out


def load_flax_checkpoint(
    path: str | os.PathLike,
    target: Any,
    rules: Sequence[KeyRule] = (),
    *,
    partial: bool = False,
    shardings: Any = None,
) -> Any:
    """Restores a checkpoint written by Flax + Orbax into a plait target.

    Args:
      path: the Orbax checkpoint directory (the one holding ``_METADATA``, or a
        step directory with a single item subdirectory such as ``default/``).
      target: the tree to fill: an NNX ``State`` / nested dict (real or from
        ``nnx.eval_shape``), Linen variables, or a params tree. Its shardings are
        used as in :func:`restore`.
      rules: adapter rules applied to the checkpoint's paths after the layout is
        aligned (so ``rename(r"^Dense_0/", "linear/")`` works for a Linen
        checkpoint restored into an NNX target).
      partial: as in :func:`restore`.
      shardings: as in :func:`restore`.

    Returns:
      The filled target (or a :class:`PartialRestore`).

    Raises:
      CheckpointMismatchError: no alignment fits; lists the problems of the
        closest one.

    Example:
      >>> import tempfile, jax.numpy as jnp, numpy as np, orbax.checkpoint as ocp
      >>> from plait.checkpoint import load_flax_checkpoint
      >>> path = tempfile.mkdtemp() + "/flax"
      >>> ocp.PyTreeCheckpointer().save(path, {"params": {"Dense_0": {"kernel": np.ones((2, 3), np.float32)}}})
      >>> target = {"linear": {"kernel": jnp.zeros((2, 3))}}
      >>> from plait.checkpoint import rename
      >>> load_flax_checkpoint(path, target, [rename("^Dense_0/", "linear/")])["linear"]["kernel"].sum()
      Array(6., dtype=float32)
    """
    state_dir = _find_item_directory(os.path.abspath(os.fspath(path)))
    structure = _orbax.read_structure(state_dir)
    sources = _foreign_sources(structure)
    targets, treedef = flatten_target(target, shardings)
    target_paths = {t.path for t in targets}

    best = None
    for order, alignment in enumerate(_ALIGNMENTS):
        candidate = _aligned(sources, alignment)
        if not candidate:
            continue
        try:
            candidate = apply_rules(candidate, rules, state_dir)
        except CheckpointMismatchError:
            continue
        found = {s.path for s in candidate}
        score = (len(target_paths - found), len(found - target_paths), order)
        if best is None or score < best[0]:
            best = (score, alignment, candidate)
    if best is None:
        raise CheckpointMismatchError(
            state_dir,
            missing=[(show(t.path), t.spec.describe()) for t in targets],
            note="  The checkpoint has no entries the rules keep.",
        )
    _, alignment, candidate = best
    note = f"  Checkpoint layout assumed: {alignment.name} (the closest of the layouts tried)."
    plan = match(targets, candidate, partial=partial, where=state_dir, note=note)
    return fill_target(state_dir, structure, plan, targets, treedef, partial=partial)
