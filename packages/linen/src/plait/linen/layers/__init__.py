"""Linen layers, activations, attention, pooling and initializers.

Everything in ``__all__`` is re-exported by ``plait.linen`` (``from .layers import *``),
so ``nn.Dense``, ``nn.relu``, ``nn.initializers.lecun_normal`` and ``nn.max_pool`` all
resolve here. The submodules ``linear``, ``normalization``, ``recurrent``, ``attention``,
``stochastic``, ``activation``, ``pooling``, ``initializers``, ``dtypes`` and ``fp8_ops``
mirror Flax's module layout for code that reaches into them. Names imported here but left out
of ``__all__`` (``DenseParams``, ``flip_sequences``, ``canonicalize_padding``, ...) live
in Flax's submodules rather than at the top level of ``flax.linen``.
"""

from __future__ import annotations

from plait.core.nn.activations import celu as celu
from plait.core.nn.activations import elu as elu
from plait.core.nn.activations import gelu as gelu
from plait.core.nn.activations import glu as glu
from plait.core.nn.activations import hard_sigmoid as hard_sigmoid
from plait.core.nn.activations import hard_silu as hard_silu
from plait.core.nn.activations import hard_swish as hard_swish
from plait.core.nn.activations import hard_tanh as hard_tanh
from plait.core.nn.activations import leaky_relu as leaky_relu
from plait.core.nn.activations import log_sigmoid as log_sigmoid
from plait.core.nn.activations import log_softmax as log_softmax
from plait.core.nn.activations import logsumexp as logsumexp
from plait.core.nn.activations import normalize as normalize
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
from plait.core.nn.attention import make_attention_mask as make_attention_mask
from plait.core.nn.attention import make_causal_mask as make_causal_mask
from plait.core.nn.initializers import ones as ones
from plait.core.nn.initializers import ones_init as ones_init
from plait.core.nn.initializers import zeros as zeros
from plait.core.nn.initializers import zeros_init as zeros_init
from plait.core.nn.pooling import avg_pool as avg_pool
from plait.core.nn.pooling import max_pool as max_pool
from plait.core.nn.pooling import min_pool as min_pool
from plait.core.nn.pooling import pool as pool

from . import activation as activation
from . import attention as attention
from . import batch_apply as batch_apply
from . import dtypes as dtypes
from . import fp8_ops as fp8_ops
from . import initializers as initializers
from . import linear as linear
from . import normalization as normalization
from . import pooling as pooling
from . import recurrent as recurrent
from . import stochastic as stochastic
from ._activation import PReLU as PReLU
from ._attention import MultiHeadAttention as MultiHeadAttention
from ._attention import MultiHeadDotProductAttention as MultiHeadDotProductAttention
from ._attention import SelfAttention as SelfAttention
from ._attention import dot_product_attention as dot_product_attention
from ._attention import dot_product_attention_weights as dot_product_attention_weights
from ._batch_apply import BatchApply as BatchApply
from ._cells import ConvLSTMCell as ConvLSTMCell
from ._cells import DenseParams as DenseParams
from ._cells import GRUCell as GRUCell
from ._cells import LSTMCell as LSTMCell
from ._cells import MGUCell as MGUCell
from ._cells import OptimizedLSTMCell as OptimizedLSTMCell
from ._cells import RNNCellBase as RNNCellBase
from ._cells import SimpleCell as SimpleCell
from ._conv import Conv as Conv
from ._conv import ConvLocal as ConvLocal
from ._conv import ConvTranspose as ConvTranspose
from ._conv import canonicalize_padding as canonicalize_padding
from ._errors import LayerConfigError as LayerConfigError
from ._errors import LayerShapeError as LayerShapeError
from ._fp8 import Fp8DirectDotGeneralOp as Fp8DirectDotGeneralOp
from ._fp8 import Fp8DotGeneral as Fp8DotGeneral
from ._fp8 import Fp8DotGeneralOp as Fp8DotGeneralOp
from ._fp8 import Fp8Einsum as Fp8Einsum
from ._fp8 import NANOOFp8DotGeneralOp as NANOOFp8DotGeneralOp
from ._linear import Dense as Dense
from ._linear import DenseGeneral as DenseGeneral
from ._linear import Einsum as Einsum
from ._linear import Embed as Embed
from ._linear import PromoteDtypeFn as PromoteDtypeFn
from ._linear import default_embed_init as default_embed_init
from ._linear import default_kernel_init as default_kernel_init
from ._normalization import BatchNorm as BatchNorm
from ._normalization import GroupNorm as GroupNorm
from ._normalization import InstanceNorm as InstanceNorm
from ._normalization import LayerNorm as LayerNorm
from ._normalization import RMSNorm as RMSNorm
from ._rnn import RNN as RNN
from ._rnn import Bidirectional as Bidirectional
from ._rnn import RNNBase as RNNBase
from ._rnn import flip_sequences as flip_sequences
from ._stochastic import Dropout as Dropout
from ._wrappers import SpectralNorm as SpectralNorm
from ._wrappers import WeightNorm as WeightNorm

__all__ = [
    "activation",
    "attention",
    "avg_pool",
    "batch_apply",
    "BatchApply",
    "BatchNorm",
    "Bidirectional",
    "celu",
    "combine_masks",
    "Conv",
    "ConvLocal",
    "ConvLSTMCell",
    "ConvTranspose",
    "Dense",
    "DenseGeneral",
    "dot_product_attention",
    "dot_product_attention_weights",
    "Dropout",
    "dtypes",
    "Einsum",
    "elu",
    "Embed",
    "Fp8DirectDotGeneralOp",
    "Fp8DotGeneral",
    "Fp8DotGeneralOp",
    "Fp8Einsum",
    "fp8_ops",
    "gelu",
    "glu",
    "GroupNorm",
    "GRUCell",
    "hard_sigmoid",
    "hard_silu",
    "hard_swish",
    "hard_tanh",
    "initializers",
    "InstanceNorm",
    "LayerNorm",
    "leaky_relu",
    "linear",
    "log_sigmoid",
    "log_softmax",
    "logsumexp",
    "LSTMCell",
    "make_attention_mask",
    "make_causal_mask",
    "max_pool",
    "MGUCell",
    "MultiHeadAttention",
    "MultiHeadDotProductAttention",
    "NANOOFp8DotGeneralOp",
    "normalization",
    "normalize",
    "one_hot",
    "ones",
    "ones_init",
    "OptimizedLSTMCell",
    "pool",
    "pooling",
    "PReLU",
    "recurrent",
    "relu",
    "relu6",
    "RMSNorm",
    "RNN",
    "RNNCellBase",
    "SelfAttention",
    "selu",
    "sigmoid",
    "silu",
    "SimpleCell",
    "soft_sign",
    "softmax",
    "softplus",
    "SpectralNorm",
    "standardize",
    "stochastic",
    "swish",
    "tanh",
    "WeightNorm",
    "zeros",
    "zeros_init",
]
