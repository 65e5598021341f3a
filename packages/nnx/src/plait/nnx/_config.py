"""Flags of plait.nnx (Flax's ``nnx_*`` configuration names).

``config.nnx_sow_capture_noop``: when True, ``Module.sow`` / ``Module.perturb`` do nothing
outside ``nnx.capture`` (default False: they store values on the module, as Flax 0.12).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class _Config:
    nnx_sow_capture_noop: bool = False

    def update(self, name: str, value: bool) -> None:
        """Sets a flag by name: ``config.update("nnx_sow_capture_noop", True)``."""
        if not hasattr(self, name):
            known = ", ".join(f.name for f in dataclasses.fields(self))
            raise AttributeError(f"Unknown plait.nnx flag {name!r}; known flags: {known}.")
        setattr(self, name, value)


config = _Config()
