"""The one place that probes JAX internals and versions.

Nothing else in plait.core imports ``jax._src``. Each probe has a fallback so that a JAX
release which moves the internal keeps plait importable (the feature that needs it then
degrades, with the reason written here).
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax import tree_util as jtu

# Concrete array classes, for exact-type dispatch in the hot flatten loop. `jax.Array` is an
# ABC (isinstance also accepts tracers), so it stays as the slower fallback check.
# Named rather than built with `type(jnp.zeros(()))`: creating an array at import would
# start JAX's backend, after which `jax.distributed.initialize()` refuses to run.
try:
    from jax._src.array import ArrayImpl as ARRAY_IMPL_TYPE
except ImportError:  # pragma: no cover - internal moved: fall back to the (slower) ABC check
    ARRAY_IMPL_TYPE = jax.Array
FAST_ARRAY_TYPES: frozenset[type] = frozenset({ARRAY_IMPL_TYPE, np.ndarray})

DictKey = jtu.DictKey
SequenceKey = jtu.SequenceKey
GetAttrKey = jtu.GetAttrKey
FlattenedIndexKey = jtu.FlattenedIndexKey

try:  # jax >= 0.4.36 exposes the opaque trace state used to detect cross-trace mutation.
    from jax._src.core import get_opaque_trace_state as _get_opaque_trace_state

    def current_trace_state() -> Any:
        """An opaque token identifying the innermost active JAX trace (equal while unchanged)."""
        return _get_opaque_trace_state(convention="nnx")

except ImportError:  # pragma: no cover - older/newer jax without the probe: guard disabled

    def current_trace_state() -> Any:
        return None


def is_array(x: Any) -> bool:
    """Whether ``x`` is a JAX array (incl. tracers) or a numpy array."""
    return type(x) in FAST_ARRAY_TYPES or isinstance(x, (jax.Array, np.ndarray))


def key_entry_to_key(entry: Any) -> Any:
    """Turns a JAX key-path entry (DictKey, SequenceKey, ...) into a plain str/int key."""
    if isinstance(entry, DictKey):
        return entry.key
    if isinstance(entry, SequenceKey):
        return entry.idx
    if isinstance(entry, GetAttrKey):
        return entry.name
    if isinstance(entry, FlattenedIndexKey):
        return entry.key
    return str(entry)


def is_jax_pytree_node(x: Any) -> bool:
    """Whether JAX's pytree registry flattens ``x`` into children (``None`` counts as a node)."""
    leaves = jtu.tree_leaves(x, is_leaf=lambda y: y is not x)
    return not (len(leaves) == 1 and leaves[0] is x)


def flatten_one_level(x: Any) -> tuple[list[tuple[Any, Any]], Any]:
    """Flattens one level of a JAX pytree node: ``([(key, child), ...], treedef)``."""
    with_path, treedef = jtu.tree_flatten_with_path(x, is_leaf=lambda y: y is not x)
    return [(key_entry_to_key(path[0]), child) for path, child in with_path], treedef
