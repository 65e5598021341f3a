"""plait.examples.vision."""

from importlib.metadata import version as _version

__version__ = _version("plait-examples-vision")
