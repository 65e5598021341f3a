"""Exception classes raised by the Linen layers.

Each message is a small document: which layer (class and module path), what it
received, what it expected, and how to fix the call.
"""

from __future__ import annotations

from typing import Final


class LayerShapeError(ValueError):
    """An input does not fit the parameters a layer already holds (or its config).

    Subclasses ``ValueError`` so code written against Flax's plain errors still
    catches it.
    """


class LayerConfigError(ValueError):
    """A layer's attributes (or call arguments) contradict each other."""


PARAM_SHAPE_MISMATCH: Final = (
    "{where}: {argument} of shape {actual_input} needs {collection} variable "
    "'{name}' of shape {needed}, but the variables passed to apply hold shape "
    "{stored}. {hint}Either pass inputs shaped like the ones the variables were "
    "initialized with, or re-run `init` with the new input shape."
)

INPUT_RANK: Final = "{where}: {argument} of shape {actual} has rank {rank}, but {need}. {fix}"
