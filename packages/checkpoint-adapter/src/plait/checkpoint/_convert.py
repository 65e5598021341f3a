"""In-memory layout conversion between Linen variables and NNX State.

Linen nests by collection, then module path::

    {'params': {'Dense_0': {'kernel': k, 'bias': b}, 'BatchNorm_0': {'scale': s, 'bias': c}},
     'batch_stats': {'BatchNorm_0': {'mean': m, 'var': v}}}

NNX nests by attribute path, and the collection is the Variable type::

    State({'Dense_0': {'kernel': Param(k), 'bias': Param(b)},
           'BatchNorm_0': {'scale': Param(s), 'bias': Param(c),
                           'mean': BatchStat(m), 'var': BatchStat(v)}})

The leaf names already agree between the two APIs (Dense/Linear ``kernel``/``bias``,
BatchNorm ``scale``/``bias``/``mean``/``var``, Conv ``kernel``, Embed
``embedding``), so the conversion moves the collection level in or out and maps
collection names to Variable types with core's registry. Module names usually
differ (``Dense_0`` versus an attribute name): pass ``rename`` rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from . import _orbax, _variables
from ._errors import CheckpointError, UnsupportedTreeError
from ._paths import Path, parse, path_from_keys, show
from ._rules import KeyRule

__all__ = ["linen_to_nnx", "nnx_to_linen"]


def _apply(rules: Sequence[KeyRule], path: Path, value: Any) -> tuple[Path, Any] | None:
    text = show(path)
    for rule in rules:
        if not rule.matches(text):
            continue
        if rule.drop:
            return None
        text = rule.rename_path(text)
        if rule.transform is not None:
            value = rule.transform(value)
    return parse(text), value


def _put(out: dict[Path, Any], origin: dict[Path, str], path: Path, value: Any, where: str) -> None:
    if path in out:
        raise CheckpointError(
            f"Layout conversion maps both {origin[path]} and {where} to {show(path)}.\n"
            "Fix: rename one of them with a rename(...) rule."
        )
    out[path] = value
    origin[path] = where


def linen_to_nnx(variables: Mapping[str, Any], rules: Sequence[KeyRule] = ()) -> Any:
    """Linen variables → NNX State (nested by module path, Variables typed by collection).

    Args:
      variables: ``{'params': {...}, 'batch_stats': {...}, ...}`` (dicts or FrozenDicts).
      rules: adapter rules applied to each module path (without the collection),
        e.g. ``rename(r"^Dense_0/", "linear/")``.

    Returns:
      A ``plait.core.State`` whose leaves are ``Param``, ``BatchStat``... Variables
      (the Variable type of each collection name, from core's registry).

    Example:
      >>> import numpy as np
      >>> from plait.checkpoint import linen_to_nnx, rename
      >>> variables = {"params": {"Dense_0": {"kernel": np.ones((2, 3))}},
      ...              "batch_stats": {"BatchNorm_0": {"mean": np.zeros(3)}}}
      >>> state = linen_to_nnx(variables, [rename("^Dense_0", "linear")])
      >>> type(state["linear"]["kernel"]).__name__, type(state["BatchNorm_0"]["mean"]).__name__
      ('Param', 'BatchStat')
    """
    out: dict[Path, Any] = {}
    origin: dict[Path, str] = {}
    for collection in variables:
        var_type = _variables.variable_type(str(collection))
        flat, _ = jax.tree_util.tree_flatten_with_path(variables[collection])
        for keys, value in flat:
            path = path_from_keys(keys)
            applied = _apply(rules, path, value)
            if applied is None:
                continue
            new_path, new_value = applied
            _put(out, origin, new_path, var_type(new_value), f"{collection}/{show(path)}")
    return _variables.make_state(_orbax.nest(out))


def nnx_to_linen(
    state: Any, rules: Sequence[KeyRule] = (), *, default_collection: str = "params"
) -> dict[str, Any]:
    """NNX State → Linen variables ``{collection: {module path...: array}}``.

    Args:
      state: an NNX ``State`` (or nested dict) of Variables; plain array leaves go
        to ``default_collection``.
      rules: adapter rules applied to each path (before the collection is added).
      default_collection: the collection of leaves that are not Variables.

    Returns:
      A plain nested dict of arrays keyed by collection name first.

    Example:
      >>> import numpy as np
      >>> from plait.core import BatchStat, Param, State
      >>> from plait.checkpoint import nnx_to_linen
      >>> state = State({"bn": {"scale": Param(np.ones(2)), "mean": BatchStat(np.zeros(2))}})
      >>> variables = nnx_to_linen(state)
      >>> sorted(variables), sorted(variables["batch_stats"]["bn"])
      (['batch_stats', 'params'], ['mean'])
    """
    out: dict[Path, Any] = {}
    origin: dict[Path, str] = {}
    flat, _ = jax.tree_util.tree_flatten_with_path(state, is_leaf=_variables.is_variable)
    for keys, leaf in flat:
        path = path_from_keys(keys)
        if _variables.is_variable(leaf):
            collection = _variables.collection_of(leaf)
            if collection is None:
                collection = _variables.register_collection(type(leaf))
            value = _variables.variable_value(leaf)
        elif isinstance(leaf, jax.Array | np.ndarray | np.generic | jax.ShapeDtypeStruct):
            collection, value = default_collection, leaf
        else:
            raise UnsupportedTreeError(
                f"nnx_to_linen: the leaf at {show(path)} is a {type(leaf).__name__}, not a Variable "
                "or array."
            )
        applied = _apply(rules, path, value)
        if applied is None:
            continue
        new_path, new_value = applied
        _put(out, origin, (collection, *new_path), new_value, show(path))
    return _orbax.nest(out)
