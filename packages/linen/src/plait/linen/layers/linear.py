"""Linear and convolution layers (``flax.linen.linear``)."""

from __future__ import annotations

from ._conv import Conv as Conv
from ._conv import ConvLocal as ConvLocal
from ._conv import ConvTranspose as ConvTranspose
from ._conv import canonicalize_padding as canonicalize_padding
from ._linear import Dense as Dense
from ._linear import DenseGeneral as DenseGeneral
from ._linear import Einsum as Einsum
from ._linear import Embed as Embed
from ._linear import PromoteDtypeFn as PromoteDtypeFn
from ._linear import default_embed_init as default_embed_init
from ._linear import default_kernel_init as default_kernel_init

__all__ = [
    "canonicalize_padding",
    "Conv",
    "ConvLocal",
    "ConvTranspose",
    "default_embed_init",
    "default_kernel_init",
    "Dense",
    "DenseGeneral",
    "Einsum",
    "Embed",
    "PromoteDtypeFn",
]
