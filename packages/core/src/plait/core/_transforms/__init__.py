"""The stateful (lifted) transforms of plait.core, one module per family.

Every transform here is a thin wrapper over the lifting engine in ``plait.core._lift``:
it picks the per-Variable treatment (axis, carry, broadcast, sharding, differentiable...)
and the JAX transform to call. This package imports nothing at import time so that the
engine and the transform modules can import each other's pieces without cycles; the public
names are re-exported by ``plait.core.__init__``.
"""
