"""plait.examples.gemma: a Gemma-family language model on plait.nnx that trains, samples and shards.

See the package README for the architecture, configs, commands and measured results.

The public names below are imported on first use (PEP 562). ``plait-gemma train
--num-processes N`` must call ``jax.distributed.initialize`` before anything starts
JAX's backend, and importing plait.core does (see the README); a lazy package
lets the command line do that first.
"""

from __future__ import annotations

import importlib
from importlib.metadata import version as _version
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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
    from ._steps import build_train_functions as build_train_functions
    from ._steps import cross_entropy as cross_entropy
    from ._tokenizer import ByteTokenizer as ByteTokenizer
    from ._tokenizer import SentencePieceTokenizer as SentencePieceTokenizer
    from ._train import TrainResult as TrainResult
    from ._train import train as train
    from ._weights import gemma_key_rules as gemma_key_rules
    from ._weights import load_gemma_weights as load_gemma_weights

# public name -> (private module, name there)
_EXPORTS: dict[str, tuple[str, str]] = {
    "Attention": ("_attention", "Attention"),
    "attention_weights_mask": ("_attention", "attention_weights_mask"),
    "dot_product_attention": ("_attention", "dot_product_attention"),
    "CONFIGS": ("_config", "CONFIGS"),
    "ModelConfig": ("_config", "ModelConfig"),
    "TrainConfig": ("_config", "TrainConfig"),
    "apply_overrides": ("_config", "apply_overrides"),
    "get_config": ("_config", "get_config"),
    "CacheError": ("_errors", "CacheError"),
    "ConfigError": ("_errors", "ConfigError"),
    "WeightLoadingError": ("_errors", "WeightLoadingError"),
    "Embedder": ("_layers", "Embedder"),
    "FeedForward": ("_layers", "FeedForward"),
    "RMSNorm": ("_layers", "RMSNorm"),
    "apply_rope": ("_layers", "apply_rope"),
    "Block": ("_model", "Block"),
    "Gemma": ("_model", "Gemma"),
    "count_params": ("_model", "count_params"),
    "Sampler": ("_sample", "Sampler"),
    "filter_logits": ("_sample", "filter_logits"),
    "pad_prompts": ("_sample", "pad_prompts"),
    "LOGICAL_AXIS_RULES": ("_sharding", "LOGICAL_AXIS_RULES"),
    "make_mesh": ("_sharding", "make_mesh"),
    "build_train_functions": ("_steps", "build_train_functions"),
    "cross_entropy": ("_steps", "cross_entropy"),
    "ByteTokenizer": ("_tokenizer", "ByteTokenizer"),
    "SentencePieceTokenizer": ("_tokenizer", "SentencePieceTokenizer"),
    "TrainResult": ("_train", "TrainResult"),
    "train": ("_train", "train"),
    "gemma_key_rules": ("_weights", "gemma_key_rules"),
    "load_gemma_weights": ("_weights", "load_gemma_weights"),
}

__all__ = sorted(_EXPORTS)
__version__ = _version("plait-examples-gemma")


def __getattr__(name: str):
    try:
        module_name, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f".{module_name}", __name__), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
