"""Deprecated names of flax.nnx that plait.nnx keeps as aliases, and their replacements.

They behave exactly like their replacements and do not warn (plait's tests turn warnings
into errors, and ported code should keep running); new code should use the replacement.
"""

DEPRECATED_ALIASES: dict[str, str] = {
    "abstract_with_sharding": "as_abstract",
    "graph": "graphlib",
    "object": "pytreelib",
    "pure": "as_pure",
    "vars_as": "with_vars",
    "ModelAndOptimizer": "Optimizer (with update(model, grads))",
}


def replacement(name: str) -> str | None:
    """The name to use instead of the deprecated ``name`` (None if it is not deprecated)."""
    return DEPRECATED_ALIASES.get(name)
