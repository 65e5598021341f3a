"""plait.bench: measure plait against a hand-written JAX floor and against its peers.

Run ``plait-bench`` (or ``python -m plait.bench``); see the package README.
"""

from importlib.metadata import version as _version

__version__ = _version("plait-bench")
