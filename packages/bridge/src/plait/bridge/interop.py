"""NNX and Linen submodules inside bridge modules (Flax's ``flax.nnx.bridge.interop``)."""

from ._interop import linen_in_bridge_mdl as linen_in_bridge_mdl
from ._interop import nnx_in_bridge_mdl as nnx_in_bridge_mdl
