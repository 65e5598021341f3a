"""The Gemma decoder: embedder, blocks with pre/post norms, final norm, tied logits."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from plait import nnx

from ._attention import Attention
from ._config import ModelConfig
from ._layers import Embedder, FeedForward, RMSNorm, softcap


class Block(nnx.Module):
    """``x + post_attn(attn(pre_attn(x)))`` then ``x + post_ffw(mlp(pre_ffw(x)))``."""

    def __init__(self, config: ModelConfig, layer_type: str, *, rngs: nnx.Rngs):
        pdt = jnp.dtype(config.param_dtype)
        d = config.embed_dim
        self.pre_attention_norm = RMSNorm(d, param_dtype=pdt)
        self.attn = Attention(config, layer_type, rngs=rngs)
        if config.use_post_attn_norm:
            self.post_attention_norm = RMSNorm(d, param_dtype=pdt)
        self.pre_ffw_norm = RMSNorm(d, param_dtype=pdt)
        self.mlp = FeedForward(d, config.hidden_dim, rngs=rngs, param_dtype=pdt, dtype=config.dtype)
        if config.use_post_ffw_norm:
            self.post_ffw_norm = RMSNorm(d, param_dtype=pdt)
        self.use_post_attn_norm = config.use_post_attn_norm
        self.use_post_ffw_norm = config.use_post_ffw_norm

    def __call__(self, x: jax.Array, positions: jax.Array, *, use_cache: bool = False) -> jax.Array:
        attended = self.attn(self.pre_attention_norm(x), positions, use_cache=use_cache)
        if self.use_post_attn_norm:
            attended = self.post_attention_norm(attended)
        x = x + attended
        hidden = self.mlp(self.pre_ffw_norm(x))
        if self.use_post_ffw_norm:
            hidden = self.post_ffw_norm(hidden)
        return x + hidden


class Gemma(nnx.Module):
    """A Gemma-family decoder-only transformer.

    Call it with ``tokens (batch, length)`` and optional ``positions (batch, length)``
    (default ``0..length-1``; -1 marks padding, which no token attends to) to get
    float32 logits ``(batch, length, vocab)``. For generation, :meth:`init_cache` then
    call with ``use_cache=True``: first the (padded) prompts, then one token per row at
    a time, each row at its own position.

    Example:
      >>> import jax.numpy as jnp
      >>> from plait import nnx
      >>> from plait.examples.gemma import Gemma, ModelConfig
      >>> config = ModelConfig(vocab_size=32, num_layers=2, embed_dim=16, hidden_dim=32,
      ...                      num_heads=2, num_kv_heads=1, head_dim=8, sliding_window=4)
      >>> model = Gemma(config, rngs=nnx.Rngs(0))
      >>> model(jnp.zeros((2, 5), jnp.int32)).shape
      (2, 5, 32)
    """

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.embedder = Embedder(
            config.vocab_size, config.embed_dim, rngs=rngs, param_dtype=jnp.dtype(config.param_dtype), dtype=config.dtype
        )
        self.layers = nnx.List([Block(config, kind, rngs=rngs) for kind in config.layer_types])
        self.final_norm = RMSNorm(config.embed_dim, param_dtype=jnp.dtype(config.param_dtype))

    def __call__(
        self, tokens: jax.Array, positions: jax.Array | None = None, *, use_cache: bool = False
    ) -> jax.Array:
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(tokens.shape[1], dtype=jnp.int32), tokens.shape)
        x = self.embedder.encode(tokens)
        for block in self.layers:
            x = block(x, positions, use_cache=use_cache)
        logits = self.embedder.decode(self.final_norm(x)).astype(jnp.float32)
        return softcap(logits, self.config.final_logit_softcap)

    def init_cache(self, batch_size: int, max_length: int, dtype=None) -> None:
        """Gives every attention layer an empty cache for positions ``< max_length``."""
        for block in self.layers:
            block.attn.init_cache(batch_size, max_length, dtype)

    def clear_cache(self) -> None:
        for block in self.layers:
            block.attn.clear_cache()


def count_params(tree) -> int:
    """Number of parameter elements in a model or State (real or abstract).

    Example:
      >>> from plait.examples.gemma import Gemma, get_config
      >>> from plait import nnx
      >>> config = get_config("tiny").model
      >>> abstract = nnx.eval_shape(lambda: Gemma(config, rngs=nnx.Rngs(0)))
      >>> count_params(abstract) == config.num_params()
      True
    """
    state = tree if isinstance(tree, nnx.State) else nnx.state(tree, nnx.Param)
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(state))
