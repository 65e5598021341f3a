"""Matching checkpoint entries to a restore target, before any array is read.

Both sides become flat lists keyed by path: ``Source`` (what the checkpoint holds,
after adapter rules) and ``Target`` (what the caller wants back). ``match`` pairs
them and collects every problem (missing, unexpected, different shape / dtype /
kind) into one CheckpointMismatchError, so a user sees the whole picture at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from . import _variables
from ._errors import CheckpointMismatchError, UnsupportedTreeError
from ._paths import Path, parse, path_from_keys, show
from ._rules import KeyRule
from ._spec import Spec, spec_of_value

__all__ = ["Plan", "Source", "Target", "apply_rules", "flatten_target", "match", "sharding_lookup"]


@dataclasses.dataclass
class Source:
    """One checkpoint entry.

    Attributes:
      path: its name for matching (after rename rules).
      stored: where Orbax holds it (``None`` for values kept in the JSON).
      spec: what it is once transformed (shape, dtype, kind).
      stored_spec: the array Orbax holds (for keys: the uint32 key data).
      origin: ``"jax"``, ``"numpy"``, ``"key"``, ``"value"`` (in the JSON), or for
        checkpoints written by someone else ``"orbax"`` (array), ``"orbax_scalar"``
        (Python number) and ``"orbax_other"`` (strings and the like; never matches).
      value: the Python value of a JSON entry.
      impl: the PRNG implementation of a key entry.
      transform: the composed adapter transform, if any.
      variable: the recorded Variable type (or Linen collection) of the entry.
      np_scalar: the entry was a NumPy scalar.
      rules: descriptions of the rules that touched it (for messages).
    """

    path: Path
    stored: Path | None
    spec: Spec
    stored_spec: Spec
    origin: str
    value: Any = None
    impl: str | None = None
    transform: Callable[[Any], Any] | None = None
    variable: Mapping[str, Any] | None = None
    np_scalar: bool = False
    rules: tuple[str, ...] = ()


@dataclasses.dataclass
class Target:
    """One leaf the caller wants restored.

    Attributes:
      path: its path in the target tree.
      leaf: the target leaf as given (a Variable, an array, a ShapeDtypeStruct...).
      spec: its shape / dtype / kind.
      output: ``"jax"``, ``"key"``, ``"numpy"``, ``"npscalar"`` or ``"python"``.
      sharding: where a JAX output goes (``None``: the default device).
      python_type: for ``"python"`` / ``"npscalar"`` outputs, the type to build.
    """

    path: Path
    leaf: Any
    spec: Spec
    output: str
    sharding: jax.sharding.Sharding | None = None
    python_type: type | None = None


def _target_of(path: Path, leaf: Any, sharding_override: Any) -> Target:
    inner = _variables.variable_value(leaf) if _variables.is_variable(leaf) else leaf
    spec = spec_of_value(inner)
    if spec is None:
        raise UnsupportedTreeError(
            f"The restore target's leaf at {show(path)} is a {type(inner).__name__}; targets "
            "hold arrays, jax.ShapeDtypeStruct, PRNG key arrays or bool/int/float/str.\n"
            "Fix: build the target with jax.eval_shape (or nnx.eval_shape) of the initializer."
        )
    if spec.kind == "value":
        return Target(path, leaf, spec, "python", python_type=type(inner))
    if isinstance(inner, np.generic):
        return Target(path, leaf, spec, "npscalar", python_type=type(inner))
    if isinstance(inner, np.ndarray):
        return Target(path, leaf, spec, "numpy")
    sharding = sharding_override
    if sharding is None:
        sharding = getattr(inner, "sharding", None)
        if not isinstance(sharding, jax.sharding.Sharding):
            sharding = None
    return Target(path, leaf, spec, "key" if spec.kind == "key" else "jax", sharding)


def sharding_lookup(shardings: Any) -> Callable[[Path], Any]:
    if shardings is None:
        return lambda path: None
    if isinstance(shardings, jax.sharding.Sharding):
        return lambda path: shardings
    flat, _ = jax.tree_util.tree_flatten_with_path(
        shardings,
        is_leaf=lambda x: isinstance(x, jax.sharding.Sharding) or _variables.is_variable(x),
    )
    by_path = {}
    for keys, value in flat:
        value = _variables.variable_value(value) if _variables.is_variable(value) else value
        if value is not None and not isinstance(value, jax.sharding.Sharding):
            raise UnsupportedTreeError(
                f"shardings= holds a {type(value).__name__} at {show(path_from_keys(keys))}; "
                "expected jax.sharding.Sharding leaves (or one Sharding for every array)."
            )
        by_path[path_from_keys(keys)] = value
    return by_path.get


def flatten_target(target: Any, shardings: Any = None) -> tuple[list[Target], Any]:
    """The target's leaves (Variables count as leaves) and its tree structure."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(target, is_leaf=_variables.is_variable)
    lookup = sharding_lookup(shardings)
    targets = []
    for keys, leaf in flat:
        path = path_from_keys(keys)
        targets.append(_target_of(path, leaf, lookup(path)))
    return targets, treedef


# ---------------------------------------------------------------------------------------
# rules


def _compose(first: Callable | None, second: Callable) -> Callable:
    if first is None:
        return second
    return lambda x: second(first(x))


def _rewrite(
    text: str, rules: Sequence[KeyRule], transform: Callable | None, touched: tuple[str, ...]
) -> list[tuple[str, Callable | None, tuple[str, ...]]]:
    """``(path, transform, rules applied)`` of each entry one checkpoint entry becomes."""
    for index, rule in enumerate(rules):
        if not rule.matches(text):
            continue
        touched = (*touched, str(rule))
        if rule.drop:
            return []
        if rule.parts:
            later = rules[index + 1 :]
            return [
                result
                for part, (_, part_fn) in enumerate(rule.parts)
                for result in _rewrite(
                    rule.rename_part(text, part), later, _compose(transform, part_fn), touched
                )
            ]
        text = rule.rename_path(text)
        if rule.transform is not None:
            transform = _compose(transform, rule.transform)
    return [(text, transform, touched)]


def apply_rules(sources: Iterable[Source], rules: Sequence[KeyRule], where: str) -> list[Source]:
    """Applies rename / transform / split / drop rules; shape-checks transforms with eval_shape."""
    out: list[Source] = []
    renamed_from: dict[Path, Path] = {}
    clashes = []
    for source in sources:
        original = source.path
        for text, transform, touched in _rewrite(show(original), rules, None, ()):
            result = dataclasses.replace(source, path=parse(text), rules=touched)
            if transform is not None:
                result = _with_transform(result, transform, where)
            if result.path in renamed_from:
                clashes.append(
                    f"{show(renamed_from[result.path])} and {show(original)} both become "
                    f"{show(result.path)}"
                )
            renamed_from[result.path] = original
            out.append(result)
    if clashes:
        raise CheckpointMismatchError(
            where,
            note="  The rename rules map several checkpoint entries to one path:\n"
            + "\n".join(f"    {clash}" for clash in clashes),
        )
    return out


def _with_transform(source: Source, transform: Callable, where: str) -> Source:
    if source.spec.kind != "array":
        raise CheckpointMismatchError(
            where,
            mismatched=[
                (show(source.path), "an array a transform can apply to", source.spec.describe())
            ],
            note=f"  Rules {', '.join(source.rules)} transform an entry that is not a numeric array.",
        )
    abstract = jax.ShapeDtypeStruct(source.spec.shape, np.dtype(source.spec.dtype))
    try:
        result = jax.eval_shape(transform, abstract)
    except Exception as err:  # a user function: report any failure with the entry's path
        raise CheckpointMismatchError(
            where,
            mismatched=[
                (
                    show(source.path),
                    "a transform that accepts the entry",
                    f"{source.spec.describe()} ({err})",
                )
            ],
            note=f"  Rules {', '.join(source.rules)} failed on this entry.",
        ) from err
    spec = Spec("array", tuple(result.shape), np.dtype(result.dtype).name)
    return dataclasses.replace(source, spec=spec, transform=transform)


# ---------------------------------------------------------------------------------------
# matching


_KIND_OF_PYTHON = {bool: "b", int: "iu", float: "iuf"}


def _scalar_kind(source: Source) -> str | None:
    """The dtype kind letter of a scalar entry (JSON value or Orbax scalar), else None."""
    if source.origin == "value":
        value = source.value
        if isinstance(value, bool):
            return "b"
        if isinstance(value, int):
            return "i"
        return "f" if isinstance(value, float) else None
    if source.origin == "orbax_scalar":
        return np.dtype(source.spec.dtype).kind
    return None


def _same_collection(target: Target, source: Source) -> bool:
    if source.variable is None or not _variables.is_variable(target.leaf):
        return True
    saved = source.variable.get("base_collection") or source.variable.get("collection")
    wanted = _variables.collection_of(target.leaf)
    return saved is None or wanted is None or saved == wanted


def compatible(target: Target, source: Source) -> bool:
    """Whether ``source`` can fill ``target`` exactly (no silent reshape or lossy cast)."""
    if not _same_collection(target, source):
        return False
    scalar_kind = _scalar_kind(source)
    if target.output == "python":
        if target.python_type is str:
            return source.origin == "value" and isinstance(source.value, str)
        allowed = _KIND_OF_PYTHON.get(target.python_type, "")
        if scalar_kind is not None:
            return scalar_kind in allowed
        return (
            source.spec.kind == "array"
            and source.spec.shape == ()
            and np.dtype(source.spec.dtype).kind in allowed
        )
    if scalar_kind is not None:
        # A Python number (saved in the JSON, or an Orbax scalar) fills a 0-d array of its kind.
        if target.spec.kind != "array" or target.spec.shape != ():
            return False
        wanted = np.dtype(target.spec.dtype).kind
        if scalar_kind in "iu":
            return wanted in "iu"
        return wanted == scalar_kind
    return source.spec == target.spec


def _describe_source(source: Source) -> str:
    text = source.spec.describe()
    if source.variable is not None:
        saved = source.variable.get("base_collection") or source.variable.get("collection")
        if saved:
            text += f" in collection {saved!r}"
    if source.rules:
        text += f" after {', '.join(source.rules)}"
    return text


def _describe_target(target: Target) -> str:
    text = target.spec.describe()
    if _variables.is_variable(target.leaf):
        wanted = _variables.collection_of(target.leaf)
        text += f" ({type(target.leaf).__name__}" + (f", collection {wanted!r})" if wanted else ")")
    return text


@dataclasses.dataclass
class Plan:
    """Target leaves paired with the entries that fill them."""

    pairs: list[tuple[Target, Source]]
    missing: list[Target]
    unused: list[Source]


def match(
    targets: Sequence[Target],
    sources: Sequence[Source],
    *,
    partial: bool,
    where: str,
    note: str = "",
) -> Plan:
    """Pairs targets with sources by path; raises one error listing every problem."""
    by_path = {source.path: source for source in sources}
    pairs, missing, mismatched = [], [], []
    used: set[Path] = set()
    for target in targets:
        source = by_path.get(target.path)
        if source is None:
            missing.append(target)
            continue
        used.add(target.path)
        if not compatible(target, source):
            mismatched.append(
                (show(target.path), _describe_target(target), _describe_source(source))
            )
            continue
        pairs.append((target, source))
    unused = [source for source in sources if source.path not in used]
    if mismatched or (not partial and (missing or unused)):
        raise CheckpointMismatchError(
            where,
            missing=[] if partial else [(show(t.path), _describe_target(t)) for t in missing],
            unexpected=[] if partial else [(show(s.path), _describe_source(s)) for s in unused],
            mismatched=mismatched,
            note=note,
        )
    return Plan(pairs, missing, unused)
