"""plait.examples.gemma."""

from importlib.metadata import version as _version

__version__ = _version("plait-examples-gemma")
