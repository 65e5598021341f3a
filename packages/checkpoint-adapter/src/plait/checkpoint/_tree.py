"""Turning a pytree into (JSON description, arrays by path) and back.

The description (the "skeleton") records the container at every level and what every
leaf is, so that a checkpoint restores without a target and so that leaves that are
not plain arrays survive exactly:

* typed PRNG key arrays (``jax.random.key``) are stored as their key data (uint32)
  and re-wrapped with the recorded implementation;
* Python ``bool``/``int``/``float``/``str`` leaves live in the JSON itself;
* NumPy arrays come back as NumPy arrays, JAX arrays as JAX arrays;
* plait Variables are stored as their value, with type and metadata in the JSON;
* namedtuples (optax states) keep their field names and come back as namedtuples
  of the same name (a class made from the recorded fields, never an import);
  other registered pytree nodes come back as dicts keyed by their child names.

Nothing here imports or calls code named by the checkpoint: the skeleton is data.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import numpy as np

from . import _variables
from ._errors import CorruptCheckpointError, UnsupportedTreeError
from ._paths import ROOT_KEY, Path, key_entry_name, show
from ._spec import Spec, is_key_dtype, is_plain_value

__all__ = [
    "Encoded",
    "SkeletonLeaf",
    "encode",
    "iter_skeleton_leaves",
    "rebuild",
    "stored_path",
]


@dataclasses.dataclass
class Encoded:
    """A tree ready to write: its JSON skeleton and its arrays keyed by stored path."""

    skeleton: dict[str, Any]
    arrays: dict[Path, Any]


@dataclasses.dataclass(frozen=True)
class SkeletonLeaf:
    """One leaf of a saved tree, as described by its skeleton."""

    path: Path
    spec: Spec
    node: Mapping[str, Any]
    variable: Mapping[str, Any] | None


def stored_path(path: Path) -> Path:
    """Where a leaf lives in the Orbax tree (a root leaf needs a key of its own)."""
    return path if path else (ROOT_KEY,)


# ---------------------------------------------------------------------------------------
# encoding


def _is_namedtuple(x: Any) -> bool:
    return isinstance(x, tuple) and hasattr(type(x), "_fields")


def _dict_key(key: Any, path: Path) -> str | int:
    if isinstance(key, bool) or not isinstance(key, str | int):
        raise UnsupportedTreeError(
            f"Dict key {key!r} of type {type(key).__name__} at {show(path)} cannot be saved: "
            "checkpoint keys must be str or int.\nFix: convert the keys to strings."
        )
    return key


def _dict_keys(node: Any, path: Path) -> list[Any]:
    keys = list(node.keys())
    names = [str(_dict_key(k, path)) for k in keys]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise UnsupportedTreeError(
            f"The dict at {show(path)} has keys that are stored under the same name {twice} "
            "(keys are stored as strings, so 0 and '0' collide).\nFix: rename the keys."
        )
    return keys


def _global_or_host(array: jax.Array) -> Any:
    """What Orbax is given for a JAX array.

    With several processes, an array that lives on this process only (made without a
    global sharding, e.g. ``jax.random.key(0)``) is not a global array; it is saved
    from the primary process's copy as a NumPy array, like any per-process value that
    is the same everywhere. It still restores as a JAX array.
    """
    if jax.process_count() > 1 and array.is_fully_addressable:
        return np.asarray(array)
    return array


def _encode_leaf(value: Any, path: Path, arrays: dict[Path, Any]) -> dict[str, Any] | None:
    """The skeleton node of a leaf value, or None if ``value`` is not a leaf."""
    if is_plain_value(value):
        return {"t": "value", "v": value}
    if isinstance(value, jax.core.Tracer):
        raise UnsupportedTreeError(
            f"The leaf at {show(path)} is a JAX tracer: checkpoints are saved outside of "
            "jit/grad/vmap.\nFix: return the values from the transformed function and save them."
        )
    if isinstance(value, jax.ShapeDtypeStruct):
        raise UnsupportedTreeError(
            f"The leaf at {show(path)} is an abstract jax.ShapeDtypeStruct {value}; a saved "
            "tree must hold concrete arrays.\nFix: save the real arrays (abstract trees are "
            "restore targets)."
        )
    if isinstance(value, jax.Array):
        shape = [int(d) for d in value.shape]
        if is_key_dtype(value.dtype):
            arrays[stored_path(path)] = _global_or_host(jax.random.key_data(value))
            impl = str(jax.random.key_impl(value))
            return {
                "t": "leaf",
                "kind": "key",
                "shape": shape,
                "dtype": str(value.dtype),
                "impl": impl,
            }
        arrays[stored_path(path)] = _global_or_host(value)
        return {"t": "leaf", "kind": "jax", "shape": shape, "dtype": np.dtype(value.dtype).name}
    if isinstance(value, np.ndarray | np.generic):
        array = np.asarray(value)
        if array.dtype.hasobject or array.dtype.kind in "USV":
            raise UnsupportedTreeError(
                f"The NumPy array at {show(path)} has dtype {array.dtype}, which cannot be saved "
                "without pickle.\nFix: save numeric arrays; put strings in `metadata=`."
            )
        arrays[stored_path(path)] = array
        node = {"t": "leaf", "kind": "numpy", "shape": list(array.shape), "dtype": array.dtype.name}
        if isinstance(value, np.generic):
            node["np_scalar"] = True
        return node
    return None


def _encode(node: Any, path: Path, arrays: dict[Path, Any]) -> dict[str, Any]:
    if _variables.is_variable(node):
        inner = _encode(_variables.variable_value(node), path, arrays)
        if inner["t"] not in ("leaf", "value"):
            raise UnsupportedTreeError(
                f"The Variable at {show(path)} holds a {type(_variables.variable_value(node)).__name__}, "
                "not an array or plain value.\nFix: checkpoints save Variables holding arrays."
            )
        return {"t": "variable", "record": _variables.variable_record(node), "value": inner}
    if _variables.is_state(node):
        keys = _dict_keys(node, path)
        return {
            "t": "state",
            "keys": [_dict_key(k, path) for k in keys],
            "items": [_encode(node[k], (*path, str(k)), arrays) for k in keys],
        }
    leaf = _encode_leaf(node, path, arrays)
    if leaf is not None:
        return leaf
    if node is None:
        return {"t": "none"}
    if _is_namedtuple(node):
        fields = list(type(node)._fields)
        return {
            "t": "namedtuple",
            "name": type(node).__name__,
            "fields": fields,
            "items": [_encode(v, (*path, f), arrays) for f, v in zip(fields, node, strict=True)],
        }
    if type(node) in (list, tuple):
        return {
            "t": type(node).__name__,
            "items": [_encode(v, (*path, str(i)), arrays) for i, v in enumerate(node)],
        }
    if isinstance(node, dict):
        keys = _dict_keys(node, path)
        return {
            "t": "dict",
            "keys": [_dict_key(k, path) for k in keys],
            "items": [_encode(node[k], (*path, str(k)), arrays) for k in keys],
        }
    children, treedef = jax.tree_util.tree_flatten_with_path(node, is_leaf=lambda x: x is not node)
    if jax.tree_util.treedef_is_leaf(treedef):
        raise UnsupportedTreeError(
            f"The leaf at {show(path)} is a {type(node).__module__}.{type(node).__qualname__}, "
            "which a checkpoint cannot hold (only arrays, PRNG key arrays, bool/int/float/str "
            "and pytree containers of them).\nFix: convert it to an array, move it to "
            "`metadata=`, or register its type as a JAX pytree node."
        )
    names = [key_entry_name(keys[0]) for keys, _ in children]
    return {
        "t": "node",
        "name": type(node).__qualname__,
        "keys": names,
        "items": [
            _encode(child, (*path, name), arrays)
            for name, (_, child) in zip(names, children, strict=True)
        ],
    }


def _check_unique(arrays: Mapping[Path, Any]) -> None:
    """Two leaves must not land on the same Orbax name (Orbax joins keys with '.')."""
    seen: dict[str, Path] = {}
    clashes = []
    for path in arrays:
        for name in ("/".join(path), ".".join(path)):
            other = seen.setdefault(name, path)
            if other != path:
                clashes.append(f"{show(other)!r} and {show(path)!r}")
    if clashes:
        raise UnsupportedTreeError(
            "These entries would be stored under the same name: "
            + "; ".join(sorted(set(clashes)))
            + ".\nKeys are stored as strings joined by '/' and '.', so e.g. {0: ..} and "
            "{'0': ..}, or 'a.b' next to a/b, collide.\nFix: rename the keys."
        )


def encode(tree: Any) -> Encoded:
    """The skeleton and arrays of ``tree``; raises UnsupportedTreeError naming bad leaves."""
    arrays: dict[Path, Any] = {}
    skeleton = _encode(tree, (), arrays)
    _check_unique(arrays)
    return Encoded(skeleton, arrays)


# ---------------------------------------------------------------------------------------
# reading the skeleton back


def _children(node: Mapping[str, Any], path: Path) -> Iterator[tuple[Path, Mapping[str, Any]]]:
    kind = node["t"]
    if kind in ("dict", "state", "node"):
        for key, child in zip(node["keys"], node["items"], strict=True):
            yield (*path, str(key)), child
    elif kind in ("list", "tuple"):
        for i, child in enumerate(node["items"]):
            yield (*path, str(i)), child
    elif kind == "namedtuple":
        for field, child in zip(node["fields"], node["items"], strict=True):
            yield (*path, field), child


def _leaf_spec(node: Mapping[str, Any]) -> Spec:
    if node["t"] == "value":
        return Spec("value", None, type(node["v"]).__name__)
    kind = "key" if node["kind"] == "key" else "array"
    return Spec(kind, tuple(int(d) for d in node["shape"]), str(node["dtype"]))


_KNOWN = {
    "leaf",
    "value",
    "none",
    "dict",
    "state",
    "node",
    "list",
    "tuple",
    "namedtuple",
    "variable",
}


def iter_skeleton_leaves(skeleton: Mapping[str, Any], where: str) -> Iterator[SkeletonLeaf]:
    """Every leaf of a skeleton with its path; malformed skeletons are corrupt checkpoints."""

    def walk(node: Any, path: Path, variable: Any) -> Iterator[SkeletonLeaf]:
        if not isinstance(node, Mapping) or node.get("t") not in _KNOWN:
            raise CorruptCheckpointError(where, f"malformed tree description at {show(path)}")
        try:
            if node["t"] == "variable":
                yield from walk(node["value"], path, node["record"])
            elif node["t"] in ("leaf", "value"):
                yield SkeletonLeaf(path, _leaf_spec(node), node, variable)
            else:
                for child_path, child in _children(node, path):
                    yield from walk(child, child_path, None)
        except (KeyError, TypeError, ValueError) as err:
            raise CorruptCheckpointError(
                where, f"malformed tree description at {show(path)} ({err!r})"
            ) from err

    yield from walk(skeleton, (), None)


@functools.cache
def _namedtuple_class(name: str, fields: tuple[str, ...]) -> type | None:
    # Cached so that two restores give equal tree structures. Names that namedtuple
    # refuses (not identifiers) fall back to a dict.
    try:
        return collections.namedtuple(name, fields)  # type: ignore[misc]
    except (ValueError, TypeError):
        return None


def rebuild(skeleton: Mapping[str, Any], leaf_value: Callable[[Path], Any]) -> Any:
    """The tree a skeleton describes, with each leaf taken from ``leaf_value(path)``."""

    def build(node: Mapping[str, Any], path: Path) -> Any:
        kind = node["t"]
        if kind == "variable":
            return _variables.rebuild_variable(node["record"], build(node["value"], path))
        if kind in ("leaf", "value"):
            return leaf_value(path)
        if kind == "none":
            return None
        children = [build(child, child_path) for child_path, child in _children(node, path)]
        if kind == "list":
            return children
        if kind == "tuple":
            return tuple(children)
        if kind == "namedtuple":
            cls = _namedtuple_class(str(node["name"]), tuple(map(str, node["fields"])))
            if cls is not None:
                return cls(*children)
            return dict(zip(node["fields"], children, strict=True))
        if kind == "state":
            return _variables.make_state(dict(zip(node["keys"], children, strict=True)))
        return dict(zip(node["keys"], children, strict=True))

    return build(skeleton, ())
