"""Exception classes of plait.core.nn.

Each message is a small document: what went wrong, the shapes or dtypes involved
(expected vs actual) and how to fix it.
"""

from __future__ import annotations


class NNShapeError(ValueError):
    """An array passed to a neural-network function has a shape it cannot accept.

    Subclasses ``ValueError`` so code written against Flax's plain errors still
    catches it.
    """


class NNDtypeError(TypeError):
    """A dtype was requested that the operation cannot compute in."""
