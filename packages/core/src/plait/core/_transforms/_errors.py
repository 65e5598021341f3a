"""Exception classes of the lifting engine and the transforms, with message templates.

Every message says what went wrong, where (the argument / output key path, and the path of
the Variable inside its object), what was expected, and how to fix it.
"""

from __future__ import annotations

from typing import Final

from .._errors import PlaitCoreError


class TransformError(PlaitCoreError, ValueError):
    """A lifted transform was called with arguments or options it cannot handle."""


class PrefixError(TransformError):
    """An ``in_axes`` / ``out_axes`` / shardings / specs prefix does not fit its tree."""


class AliasingError(TransformError):
    """One object (or Variable) reached through several paths got inconsistent treatments."""


class OutputError(TransformError):
    """A transformed function returned something the transform cannot pass out."""


class CarryError(TransformError):
    """The carry of a loop (scan, while_loop, fori_loop) changed type, structure or identity."""


PREFIX_MISMATCH: Final = (
    "{transform}: {name}={prefix!r} does not fit the {what}.\n"
    "{detail}\n"
    "Fix: give {name} one entry per positional argument (a tuple as long as the argument "
    "list), or a single value for all of them; an entry may itself be a pytree prefix of "
    "its argument. A StateAxes / StateSharding / DiffState entry must sit exactly at a "
    "graph node (an Object such as an nnx Module), not above a container of several."
)

INCONSISTENT_ALIAS: Final = (
    "{transform}: the same {kind} is reached through {first} and {second} with different "
    "{name} ({first_value!r} vs {second_value!r}).\n"
    "A shared object can only be transformed one way.\n"
    "Fix: give both places the same {name}, or pass the object only once."
)

NO_FILTER_MATCH: Final = (
    "{transform}: the Variable at {path} ({var_type}) matched none of the filters of "
    "{prefix!r}.\n"
    "Fix: add a filter for it, or end the mapping with a catch-all entry `...: <value>`."
)

NOT_A_NODE_FOR_MAPPING: Final = (
    "{transform}: {prefix!r} at {where} applies to a {type_name}, but filter mappings "
    "(StateAxes, StateSharding, DiffState) only apply to graph nodes (Objects, nnx Modules, "
    "registered node types).\n"
    "Fix: use a plain value ({hint}) for non-object arguments."
)

BAD_OUTPUT: Final = (
    "{transform}: the function returned a {type_name} at out{path}, which cannot leave the "
    "transform (only arrays, Python scalars, None, pytrees of them and graph nodes can).\n"
    "Fix: return arrays (e.g. jnp.asarray(x)) or keep the value inside the object."
)

LOOP_STRUCTURE: Final = (
    "{transform}: the {what} changed between iterations: it went in as\n  {before}\nand came "
    "out as\n  {after}.\n"
    "The loop carry (including the structure of the objects it holds) must be identical "
    "in every iteration.\n"
    "Fix: do not add or remove attributes, Variables or sub-objects of carried objects "
    "inside the loop body, and return the same kind of values that went in."
)

CARRY_IDENTITY: Final = (
    "{transform}: the carry at {path} was {before} when the iteration started but the body "
    "returned a different object ({after}).\n"
    "Objects in the carry must come back as the same objects (arrays may change).\n"
    "Fix: mutate the object in place and return it, instead of building a new one."
)
