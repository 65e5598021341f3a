"""plait.core.nn: stateless neural-network math shared by plait.nnx and plait.linen.

Submodules: ``initializers``, ``activations``, ``pooling``, ``dtypes``, ``attention``,
``normalization``.
Nothing here holds state; layers in the front ends call these functions with their
parameters. Only jax and numpy are imported, so the folder stays vendorable.

Examples:
  >>> import jax.numpy as jnp
  >>> from plait.core import nn
  >>> nn.relu(jnp.array([-1.0, 1.0])).tolist()
  [0.0, 1.0]
  >>> nn.avg_pool(jnp.ones((1, 4, 1)), (2,), strides=(2,)).shape
  (1, 2, 1)
"""

from . import activations as activations
from . import attention as attention
from . import dtypes as dtypes
from . import initializers as initializers
from . import normalization as normalization
from . import pooling as pooling
from ._errors import NNDtypeError as NNDtypeError
from ._errors import NNShapeError as NNShapeError
from .activations import celu as celu
from .activations import elu as elu
from .activations import gelu as gelu
from .activations import glu as glu
from .activations import hard_sigmoid as hard_sigmoid
from .activations import hard_silu as hard_silu
from .activations import hard_swish as hard_swish
from .activations import hard_tanh as hard_tanh
from .activations import identity as identity
from .activations import leaky_relu as leaky_relu
from .activations import log_sigmoid as log_sigmoid
from .activations import log_softmax as log_softmax
from .activations import logsumexp as logsumexp
from .activations import mish as mish
from .activations import normalize as normalize
from .activations import one_hot as one_hot
from .activations import relu as relu
from .activations import relu6 as relu6
from .activations import selu as selu
from .activations import sigmoid as sigmoid
from .activations import silu as silu
from .activations import soft_sign as soft_sign
from .activations import softmax as softmax
from .activations import softplus as softplus
from .activations import sparse_plus as sparse_plus
from .activations import sparse_sigmoid as sparse_sigmoid
from .activations import squareplus as squareplus
from .activations import standardize as standardize
from .activations import swish as swish
from .activations import tanh as tanh
from .attention import combine_masks as combine_masks
from .attention import dot_product_attention as dot_product_attention
from .attention import dot_product_attention_weights as dot_product_attention_weights
from .attention import make_attention_mask as make_attention_mask
from .attention import make_causal_mask as make_causal_mask
from .dtypes import canonicalize_dtype as canonicalize_dtype
from .dtypes import promote_dtype as promote_dtype
from .dtypes import promote_dtype_args as promote_dtype_args
from .initializers import Initializer as Initializer
from .pooling import avg_pool as avg_pool
from .pooling import max_pool as max_pool
from .pooling import min_pool as min_pool
from .pooling import pool as pool
