"""plait.core: the substrate shared by plait.nnx and plait.linen."""

from ._version import __version__ as __version__
