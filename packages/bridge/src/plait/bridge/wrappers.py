"""The wrappers between Linen and NNX modules (Flax's ``flax.nnx.bridge.wrappers``)."""

from ._context import current_linen_module as current_linen_module
from ._functional import Functional as Functional
from ._functional import functional as functional
from ._to_linen import ToLinen as ToLinen
from ._to_linen import linen_rngs_dict as linen_rngs_dict
from ._to_linen import to_linen as to_linen
from ._to_linen import to_linen_class as to_linen_class
from ._to_nnx import ToNNX as ToNNX
from ._to_nnx import lazy_init as lazy_init
