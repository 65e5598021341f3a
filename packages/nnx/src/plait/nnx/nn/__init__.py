"""Layers of plait.nnx (Flax NNX ``flax.nnx.nn``), re-exported by ``plait.nnx``.

Layers are Modules built from ``plait.core.nn``'s stateless functions; activations,
attention functions and initializers are those functions themselves, shared with Linen.
Pooling functions are exported by ``plait.nnx`` directly.
"""

from plait.core.nn.activations import celu as celu
from plait.core.nn.activations import elu as elu
from plait.core.nn.activations import gelu as gelu
from plait.core.nn.activations import glu as glu
from plait.core.nn.activations import hard_sigmoid as hard_sigmoid
from plait.core.nn.activations import hard_silu as hard_silu
from plait.core.nn.activations import hard_swish as hard_swish
from plait.core.nn.activations import hard_tanh as hard_tanh
from plait.core.nn.activations import identity as identity
from plait.core.nn.activations import leaky_relu as leaky_relu
from plait.core.nn.activations import log_sigmoid as log_sigmoid
from plait.core.nn.activations import log_softmax as log_softmax
from plait.core.nn.activations import logsumexp as logsumexp
from plait.core.nn.activations import one_hot as one_hot
from plait.core.nn.activations import relu as relu
from plait.core.nn.activations import relu6 as relu6
from plait.core.nn.activations import selu as selu
from plait.core.nn.activations import sigmoid as sigmoid
from plait.core.nn.activations import silu as silu
from plait.core.nn.activations import soft_sign as soft_sign
from plait.core.nn.activations import softmax as softmax
from plait.core.nn.activations import softplus as softplus
from plait.core.nn.activations import standardize as standardize
from plait.core.nn.activations import swish as swish
from plait.core.nn.activations import tanh as tanh
from plait.core.nn.attention import combine_masks as combine_masks
from plait.core.nn.attention import dot_product_attention as dot_product_attention
from plait.core.nn.attention import dot_product_attention_weights as dot_product_attention_weights
from plait.core.nn.attention import make_attention_mask as make_attention_mask
from plait.core.nn.attention import make_causal_mask as make_causal_mask
from plait.core.nn.initializers import Initializer as Initializer

from . import dtypes as dtypes
from . import initializers as initializers
from ._activations import PReLU as PReLU
from ._attention import MultiHeadAttention as MultiHeadAttention
from ._attention import RoPE as RoPE
from ._attention import dot_product_attention_with_rope as dot_product_attention_with_rope
from ._linear import Conv as Conv
from ._linear import ConvTranspose as ConvTranspose
from ._linear import Einsum as Einsum
from ._linear import Embed as Embed
from ._linear import Linear as Linear
from ._linear import LinearGeneral as LinearGeneral
from ._lora import LoRA as LoRA
from ._lora import LoRALinear as LoRALinear
from ._lora import LoRAParam as LoRAParam
from ._norm import BatchNorm as BatchNorm
from ._norm import GroupNorm as GroupNorm
from ._norm import InstanceNorm as InstanceNorm
from ._norm import LayerNorm as LayerNorm
from ._norm import RMSNorm as RMSNorm
from ._norm import SpectralNorm as SpectralNorm
from ._norm import WeightNorm as WeightNorm
from ._recurrent import RNN as RNN
from ._recurrent import Bidirectional as Bidirectional
from ._recurrent import GRUCell as GRUCell
from ._recurrent import LSTMCell as LSTMCell
from ._recurrent import OptimizedLSTMCell as OptimizedLSTMCell
from ._recurrent import RNNCellBase as RNNCellBase
from ._recurrent import SimpleCell as SimpleCell
from ._stochastic import Dropout as Dropout

__all__ = [
    "BatchNorm",
    "Bidirectional",
    "Conv",
    "ConvTranspose",
    "Dropout",
    "Einsum",
    "Embed",
    "GRUCell",
    "GroupNorm",
    "Initializer",
    "InstanceNorm",
    "LSTMCell",
    "LayerNorm",
    "Linear",
    "LinearGeneral",
    "LoRA",
    "LoRALinear",
    "LoRAParam",
    "MultiHeadAttention",
    "OptimizedLSTMCell",
    "PReLU",
    "RMSNorm",
    "RNN",
    "RNNCellBase",
    "RoPE",
    "SimpleCell",
    "SpectralNorm",
    "WeightNorm",
    "celu",
    "combine_masks",
    "dot_product_attention",
    "dot_product_attention_with_rope",
    "elu",
    "gelu",
    "glu",
    "hard_sigmoid",
    "hard_silu",
    "hard_swish",
    "hard_tanh",
    "identity",
    "initializers",
    "leaky_relu",
    "log_sigmoid",
    "log_softmax",
    "logsumexp",
    "make_attention_mask",
    "make_causal_mask",
    "one_hot",
    "relu",
    "relu6",
    "selu",
    "sigmoid",
    "silu",
    "soft_sign",
    "softmax",
    "softplus",
    "standardize",
    "swish",
    "tanh",
]
