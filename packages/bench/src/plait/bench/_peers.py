"""The optional peers: Flax (``flax.nnx`` and ``flax.linen``) and Equinox, when importable.

Install them with the ``peers`` extra (``plait-bench[peers]``). A peer that is missing is
skipped; the plait variants and the floor always run.
"""

from __future__ import annotations

import dataclasses
from importlib.metadata import PackageNotFoundError, version
from types import ModuleType


@dataclasses.dataclass(frozen=True)
class Peers:
    """The peer libraries found in this environment (``None`` where absent)."""

    flax_nnx: ModuleType | None = None
    flax_linen: ModuleType | None = None
    equinox: ModuleType | None = None

    @property
    def names(self) -> list[str]:
        return [n for n, m in (("flax", self.flax_nnx), ("equinox", self.equinox)) if m is not None]


def load_peers(wanted: tuple[str, ...] = ("flax", "equinox")) -> Peers:
    """Imports the ``wanted`` peers that are installed."""
    found: dict[str, ModuleType] = {}
    if "flax" in wanted:
        try:
            from flax import linen as flax_linen
            from flax import nnx as flax_nnx
        except ImportError:
            pass
        else:
            found.update(flax_nnx=flax_nnx, flax_linen=flax_linen)
    if "equinox" in wanted:
        try:
            import equinox
        except ImportError:
            pass
        else:
            found["equinox"] = equinox
    return Peers(**found)


def versions() -> dict[str, str]:
    """Installed versions of the measured libraries (for the JSON's metadata)."""
    out = {}
    for dist in ("jax", "jaxlib", "optax", "numpy", "orbax-checkpoint", "flax", "equinox",
                 "plait-core", "plait-nnx", "plait-linen", "plait-checkpoint", "plait-bench"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out
