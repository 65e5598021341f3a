"""Attention functions, masks and multi-head attention layers (``flax.linen.attention``)."""

from __future__ import annotations

from plait.core.nn.attention import combine_masks as combine_masks
from plait.core.nn.attention import make_attention_mask as make_attention_mask
from plait.core.nn.attention import make_causal_mask as make_causal_mask

from ._attention import MultiHeadAttention as MultiHeadAttention
from ._attention import MultiHeadDotProductAttention as MultiHeadDotProductAttention
from ._attention import SelfAttention as SelfAttention
from ._attention import dot_product_attention as dot_product_attention
from ._attention import dot_product_attention_weights as dot_product_attention_weights

__all__ = [
    "combine_masks",
    "dot_product_attention",
    "dot_product_attention_weights",
    "make_attention_mask",
    "make_causal_mask",
    "MultiHeadAttention",
    "MultiHeadDotProductAttention",
    "SelfAttention",
]
