"""Loading published Gemma weights (Google's Flax/Orbax parameter layout) into :class:`Gemma`.

Google's checkpoints store ``{'transformer': {'embedder': {'input_embedding'},
'layer_<i>': {'attn': {'q_einsum', 'kv_einsum', 'attn_vec_einsum', '_query_norm',
'_key_norm'}, 'mlp': {'gating_einsum', 'linear'}, '<pre/post>_<attention/ffw>_norm'},
'final_norm'}}``. :func:`gemma_key_rules` is the mapping table onto this package's
layout, written as ``plait.checkpoint`` adapter rules (renames and transposes), so the
arrays are read once, straight into the target's dtype and sharding.

+-------------------------------+-----------------------+-------------------------------+
| Google path (``.../w``)       | shape                 | here (shape)                  |
+===============================+=======================+===============================+
| embedder/input_embedding      | (vocab, d)            | embedder/embedding (same)     |
| layer_i/attn/q_einsum         | (heads, d, hd)        | layers/i/attn/q_proj (d, heads, hd) |
| layer_i/attn/kv_einsum        | (2, kv, d, hd)        | layers/i/attn/kv_proj (2, d, kv, hd) |
| layer_i/attn/qkv_einsum [2]_  | (3, heads, d, hd)     | q_proj and kv_proj, as above  |
| layer_i/attn/attn_vec_einsum  | (heads, hd, d)        | layers/i/attn/o_proj (same)   |
| layer_i/attn/_query_norm      | (hd,)                 | layers/i/attn/query_norm      |
| layer_i/mlp/gating_einsum     | (2, hidden, d) [1]_   | layers/i/mlp/gate_up_proj (2, d, hidden) |
| layer_i/mlp/linear            | (hidden, d)           | layers/i/mlp/down_proj (same) |
+-------------------------------+-----------------------+-------------------------------+

.. [1] Gemma 3 checkpoints; older ones store ``(2, d, hidden)`` (``gating_layout``).
.. [2] Gemma 1 checkpoints with as many key/value heads as query heads fuse the three
   projections; a ``split`` rule cuts them apart on read.
"""

from __future__ import annotations

import os
from typing import Any

import jax
from plait import checkpoint as ckpt
from plait import nnx

from ._config import ModelConfig
from ._errors import WeightLoadingError
from ._model import Gemma

GATING_LAYOUTS = ("auto", "hidden_first", "embed_first")


def _gating_transform(config: ModelConfig, layout: str):
    d, hidden = config.embed_dim, config.hidden_dim

    def to_embed_first(w):
        shape = tuple(w.shape)
        if layout == "embed_first" or (layout == "auto" and shape == (2, d, hidden) and d != hidden):
            return w
        if layout == "hidden_first" or (layout == "auto" and shape == (2, hidden, d)):
            if d == hidden and layout == "auto":
                raise WeightLoadingError(
                    f"gating_einsum is {shape}: with embed_dim == hidden_dim the layout is ambiguous.\n"
                    "Fix: pass gating_layout='hidden_first' (Gemma 3) or 'embed_first' (older checkpoints)."
                )
            return w.transpose(0, 2, 1)
        raise WeightLoadingError(
            f"gating_einsum has shape {shape}; expected (2, {hidden}, {d}) or (2, {d}, {hidden}) for this config."
        )

    return to_embed_first


def gemma_key_rules(config: ModelConfig, *, gating_layout: str = "auto") -> list[ckpt.KeyRule]:
    """Adapter rules from Google's Gemma Flax layout to :class:`Gemma`'s parameter paths.

    Example:
      >>> from plait.examples.gemma import get_config
      >>> rules = gemma_key_rules(get_config("tiny").model)
      >>> path = "transformer/layer_3/attn/q_einsum/w"
      >>> for rule in rules:
      ...     path = rule.rename_path(path) if rule.matches(path) else path
      >>> path
      'layers/3/attn/q_proj'
    """
    if gating_layout not in GATING_LAYOUTS:
        raise WeightLoadingError(f"gating_layout must be one of {GATING_LAYOUTS}, got {gating_layout!r}.")
    rules = [
        ckpt.rename(r"^transformer/", ""),
        # Multimodal Gemma 3 checkpoints also hold the vision tower and its projection.
        ckpt.drop(r"^(vision_encoder|embedder/mm_)"),
        ckpt.drop(r"^siglip"),
        ckpt.rename(r"^layer_(\d+)/", r"layers/\1/"),
        ckpt.rename(r"^embedder/input_embedding$", "embedder/embedding"),
        # Gemma 1 (multi-head attention) fuses the projections; the rules below then
        # transpose each part like the unfused entries.
        ckpt.split(r"/attn/qkv_einsum/w$", {"/attn/q_proj": lambda w: w[0],
                                              "/attn/kv_proj": lambda w: w[1:]}),
        ckpt.rename(r"/attn/q_einsum/w$", "/attn/q_proj"),
        ckpt.transpose(r"/attn/q_proj$", (1, 0, 2)),
        ckpt.rename(r"/attn/kv_einsum/w$", "/attn/kv_proj"),
        ckpt.transpose(r"/attn/kv_proj$", (0, 2, 1, 3)),
        ckpt.rename(r"/attn/attn_vec_einsum/w$", "/attn/o_proj"),
        ckpt.rename(r"/attn/_query_norm/", "/attn/query_norm/"),
        ckpt.rename(r"/attn/_key_norm/", "/attn/key_norm/"),
        ckpt.rename(r"/mlp/gating_einsum/w$", "/mlp/gate_up_proj"),
        ckpt.KeyRule(
            r"/mlp/gate_up_proj$",
            transform=_gating_transform(config, gating_layout),
            description=f"gating_einsum -> (2, embed, hidden) [{gating_layout}]",
        ),
        ckpt.rename(r"/mlp/linear/w$", "/mlp/down_proj"),
    ]
    return rules


def load_gemma_weights(
    path: str | os.PathLike,
    config: ModelConfig,
    *,
    gating_layout: str = "auto",
    shardings: Any = None,
) -> Gemma:
    """A :class:`Gemma` holding the weights of a Google-layout Orbax checkpoint.

    The model is built abstractly (``nnx.eval_shape``), so only the checkpoint's arrays
    are ever allocated, in the config's ``param_dtype`` (cast on read) and, with
    ``shardings`` (a State of ``NamedSharding`` like the model's), already sharded.

    Raises:
      plait.checkpoint.CheckpointMismatchError: the checkpoint does not fit ``config``
        (every missing / unexpected / mismatched path is listed).
    """
    abstract = nnx.eval_shape(lambda: Gemma(config, rngs=nnx.Rngs(0)))
    graphdef, target = nnx.split(abstract)
    dtype = jax.numpy.dtype(config.param_dtype)
    rules = [*gemma_key_rules(config, gating_layout=gating_layout), ckpt.cast(r".", dtype)]
    state = ckpt.load_flax_checkpoint(path, target, rules, shardings=shardings)
    return nnx.merge(graphdef, state)
