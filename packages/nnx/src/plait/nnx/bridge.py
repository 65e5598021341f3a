"""``plait.nnx.bridge`` as a module path: the Linen<->NNX bridge is plait.bridge.

The bridge needs both APIs, so it ships in its own distribution, plait-bridge; this file
only makes ``import plait.nnx.bridge`` / ``from plait.nnx.bridge import ToNNX`` (Flax's
``flax.nnx.bridge`` paths) resolve to it, by handing the import system that module.
"""

import sys

try:
    from plait import bridge as _bridge
except ImportError as _error:
    raise ImportError(
        "plait.nnx.bridge (the Linen<->NNX bridge) is plait.bridge, in the distribution "
        "plait-bridge, which is not installed.\nFix: install plait-bridge and use "
        "`from plait import bridge` (plait.nnx.bridge then works too)."
    ) from _error

sys.modules[__name__] = _bridge
