"""Exception classes of plait.core's object-graph layer, and their message templates.

Every message says what went wrong, where (a key path such as ``('layers', 0, 'kernel')``),
what was expected, and how to fix it.
"""

from __future__ import annotations

from typing import Final


class PlaitCoreError(Exception):
    """Base class of every error raised by plait.core."""


class VariableError(PlaitCoreError, ValueError):
    """A Variable was built or used incorrectly (bad metadata, unknown collection name...)."""


class FilterError(PlaitCoreError, ValueError):
    """A filter is malformed, or a split left some state unmatched."""


class GraphError(PlaitCoreError, ValueError):
    """An object graph could not be flattened, merged or updated."""


class StateMismatchError(GraphError):
    """A State's paths do not fit the GraphDef it is merged with."""


class TraceContextError(PlaitCoreError, RuntimeError):
    """An Object was mutated from a JAX trace other than the one that created it."""


class RngStreamError(PlaitCoreError, AttributeError, KeyError):
    """An RNG stream was requested that does not exist and there is no ``default`` stream.

    Subclasses both AttributeError (``rngs.dropout``) and KeyError (``rngs['dropout']``),
    so ``hasattr`` and ``in``-style checks behave as with plain attributes and mappings.
    """

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


UNMATCHED_LEAF: Final = (
    "Non-exhaustive filters: the leaf at path {path} ({kind}) matched none of the "
    "filters {filters}.\n"
    "Fix: add a filter for it, or pass `...` as the last filter to collect everything "
    "that is left, e.g. `split(node, {first}, ...)`."
)

NOT_A_GRAPH_NODE: Final = (
    "{func}() expects a graph node (a plait Object such as an nnx Module, or a type "
    "registered with register_graph_node_type), a list, a tuple or a dict, but got a "
    "value of type {type_name}.\n"
    "Fix: pass the module/object itself; plain arrays and numbers have no graph to split."
)

MISSING_PATHS: Final = (
    "The state does not fit the GraphDef: {count} path(s) the GraphDef needs are missing "
    "from the state, e.g. {examples}.\n"
    "Fix: pass every state returned by split() to merge(), e.g. "
    "`merge(graphdef, params, rest)`, or build the graphdef from the same object."
)

EXTRA_PATHS: Final = (
    "The state does not fit the GraphDef: {count} path(s) in the state are unknown to the "
    "GraphDef, e.g. {examples}.\n"
    "Fix: make sure the state was produced by split()/state() on an object with the same "
    "structure as the graphdef (same attributes, same list lengths)."
)

WRONG_LEAF_COUNT: Final = (
    "The GraphDef expects {expected} leaves but {actual} were given.\n"
    "Fix: pass the list returned by flatten(node, with_paths=False) for a node of the "
    "same structure."
)

SHARED_IN_TREE_MODE: Final = (
    "Tree mode (graph=False) found a shared reference: the {kind} at path {path} is the "
    "same object as the one at path {first_path}.\n"
    "Fix: use graph mode (graph=True, the default), which keeps shared references, or "
    "give each path its own object."
)

TRACE_CONTEXT: Final = (
    "Cannot set attribute {name!r} of {type_name}: the object was created outside the "
    "current JAX trace (for example it was created outside a jax.jit / jax.grad / "
    "jax.vmap function and is being mutated inside it).\n"
    "Fix: use the plait transform instead (nnx.jit, nnx.grad, nnx.vmap, ...), which "
    "propagates object updates, or pass the state explicitly: "
    "`graphdef, state = split(obj)` outside, `obj = merge(graphdef, state)` inside."
)

MISSING_STREAM: Final = (
    "No RNG stream named {name!r} and no 'default' stream to fall back to. "
    "Available streams: {available}.\n"
    "Fix: create it, e.g. `Rngs({name}=0)`, or give a default: `Rngs(0)`."
)
