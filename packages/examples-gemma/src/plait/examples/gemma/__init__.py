"""plait.examples.gemma: a Gemma-family language model on plait.nnx that trains, samples and shards.

See the package README for the architecture, configs, commands and measured results.
"""

from importlib.metadata import version as _version

from ._attention import Attention as Attention
from ._attention import attention_weights_mask as attention_weights_mask
from ._attention import dot_product_attention as dot_product_attention
from ._config import CONFIGS as CONFIGS
from ._config import ModelConfig as ModelConfig
from ._config import TrainConfig as TrainConfig
from ._config import apply_overrides as apply_overrides
from ._config import get_config as get_config
from ._errors import CacheError as CacheError
from ._errors import ConfigError as ConfigError
from ._errors import WeightLoadingError as WeightLoadingError
from ._layers import Embedder as Embedder
from ._layers import FeedForward as FeedForward
from ._layers import RMSNorm as RMSNorm
from ._layers import apply_rope as apply_rope
from ._model import Block as Block
from ._model import Gemma as Gemma
from ._model import count_params as count_params
from ._sample import Sampler as Sampler
from ._sample import filter_logits as filter_logits
from ._sample import pad_prompts as pad_prompts
from ._sharding import LOGICAL_AXIS_RULES as LOGICAL_AXIS_RULES
from ._sharding import make_mesh as make_mesh
from ._steps import build as build_train_functions
from ._steps import cross_entropy as cross_entropy
from ._tokenizer import ByteTokenizer as ByteTokenizer
from ._tokenizer import SentencePieceTokenizer as SentencePieceTokenizer
from ._train import TrainResult as TrainResult
from ._train import train as train
from ._weights import gemma_key_rules as gemma_key_rules
from ._weights import load_gemma_weights as load_gemma_weights

__version__ = _version("plait-examples-gemma")
