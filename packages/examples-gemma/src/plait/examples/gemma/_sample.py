"""Sampling: prefill the prompts into the KV cache, then decode one token per step.

Prompts of different lengths are padded on the left (default) or the right; padding
gets position -1, so it is never attended to, and every row's first real token is at
position 0. Prefill and the whole decode loop are one jitted function.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from plait import nnx

from ._errors import CacheError
from ._model import Gemma

NEG_INF = -jnp.inf


def filter_logits(logits: jax.Array, *, top_k: int | None = None, top_p: float | None = None) -> jax.Array:
    """Sets logits outside the top-k and outside the top-p nucleus to -inf.

    ``top_p`` keeps the smallest set of most likely tokens whose probability sums to at
    least ``top_p`` (always at least the most likely one).

    Example:
      >>> import jax.numpy as jnp
      >>> logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
      >>> jnp.isfinite(filter_logits(logits, top_k=3)).tolist()
      [[True, True, True, False]]
      >>> jnp.isfinite(filter_logits(logits, top_p=0.7)).tolist()
      [[True, True, False, False]]
    """
    if top_k is not None and top_k > 0 and top_k < logits.shape[-1]:
        kth = jax.lax.top_k(logits, top_k)[0][..., -1:]
        logits = jnp.where(logits < kth, NEG_INF, logits)
    if top_p is not None and top_p < 1.0:
        sorted_logits = jnp.sort(logits, axis=-1)[..., ::-1]
        probs = jax.nn.softmax(sorted_logits, axis=-1)
        before = jnp.cumsum(probs, axis=-1) - probs  # mass of the strictly more likely tokens
        keep_sorted = before < top_p
        # The threshold is the smallest kept logit; ties with it are kept too.
        threshold = jnp.min(jnp.where(keep_sorted, sorted_logits, jnp.inf), axis=-1, keepdims=True)
        logits = jnp.where(logits < threshold, NEG_INF, logits)
    return logits


def choose_tokens(
    logits: jax.Array, key: jax.Array, *, temperature: float, top_k: int | None, top_p: float | None
) -> jax.Array:
    """Greedy (``temperature == 0``) or sampled next tokens for ``logits (batch, vocab)``."""
    if temperature == 0.0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    filtered = filter_logits(logits.astype(jnp.float32) / temperature, top_k=top_k, top_p=top_p)
    return jax.random.categorical(key, filtered, axis=-1).astype(jnp.int32)


def pad_prompts(prompts: Sequence[Sequence[int]], pad_id: int, *, side: str = "left") -> tuple[np.ndarray, np.ndarray]:
    """``(tokens, positions)`` of ragged prompts padded to the longest; padding has position -1.

    Example:
      >>> tokens, positions = pad_prompts([[7, 8, 9], [5]], pad_id=0, side="left")
      >>> tokens.tolist(), positions.tolist()
      ([[7, 8, 9], [0, 0, 5]], [[0, 1, 2], [-1, -1, 0]])
    """
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}.")
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token (e.g. the BOS token).")
    length = max(len(p) for p in prompts)
    tokens = np.full((len(prompts), length), pad_id, np.int32)
    positions = np.full((len(prompts), length), -1, np.int32)
    for row, prompt in enumerate(prompts):
        start = length - len(prompt) if side == "left" else 0
        tokens[row, start : start + len(prompt)] = prompt
        positions[row, start : start + len(prompt)] = np.arange(len(prompt))
    return tokens, positions


@functools.lru_cache(maxsize=32)
def _compiled_generate(
    graphdef, batch: int, prompt_len: int, max_new: int, temperature: float, top_k, top_p, stop_id, limit
):
    """The jitted prefill + decode loop; cached, so equal models and shapes compile once."""

    @jax.jit
    def run(params, tokens, positions, key):
        model = nnx.merge(graphdef, params)
        model.init_cache(batch, prompt_len + max_new)
        logits = model(tokens, positions, use_cache=True)
        last_index = jnp.argmax(positions, axis=1)
        next_logits = jnp.take_along_axis(logits, last_index[:, None, None], axis=1)[:, 0]
        next_position = jnp.max(positions, axis=1) + 1
        cache_graphdef, cache_state, rest = nnx.split(model, nnx.Cache, ...)
        out = jnp.zeros((batch, max_new), jnp.int32)
        done = jnp.zeros((batch,), bool)

        def body(i, carry):
            cache, next_logits, next_position, out, done, key = carry
            key, draw = jax.random.split(key)
            if limit is not None and limit < next_logits.shape[-1]:
                # A model may have more ids than its tokenizer (vocab rounded up for sharding).
                allowed = jnp.arange(next_logits.shape[-1]) < limit
                next_logits = jnp.where(allowed[None, :], next_logits, NEG_INF)
            token = choose_tokens(next_logits, draw, temperature=temperature, top_k=top_k, top_p=top_p)
            out = out.at[:, i].set(jnp.where(done, -1, token))
            if stop_id is not None:
                done = done | (token == stop_id)
            step_model = nnx.merge(cache_graphdef, cache, rest)
            logits = step_model(token[:, None], next_position[:, None], use_cache=True)
            cache = nnx.state(step_model, nnx.Cache)
            return cache, logits[:, 0], next_position + 1, out, done, key

        carry = (cache_state, next_logits, next_position, out, done, key)
        return jax.lax.fori_loop(0, max_new, body, carry)[3]

    return run


class Sampler:
    """Generates continuations of token prompts with a :class:`Gemma` model and KV cache.

    Args:
      model: the model (its parameters are read; a copy gets the cache).
      tokenizer: used by :meth:`generate_text` (``encode``/``decode``/``bos_id``/
        ``eos_id``/``pad_id``).

    Example:
      >>> from plait import nnx
      >>> from plait.examples.gemma import Gemma, ModelConfig, Sampler, ByteTokenizer
      >>> config = ModelConfig(vocab_size=259, num_layers=1, embed_dim=16, hidden_dim=32,
      ...                      num_heads=2, num_kv_heads=1, head_dim=8, sliding_window=4)
      >>> sampler = Sampler(Gemma(config, rngs=nnx.Rngs(0)), ByteTokenizer())
      >>> out = sampler.generate([[1, 70, 71], [1, 72]], max_new_tokens=3, temperature=0.0)
      >>> [len(o) for o in out]
      [3, 3]
    """

    def __init__(self, model: Gemma, tokenizer=None):
        _, _, rest = nnx.split(model, nnx.Param, ...)
        other = sorted({type(v).__name__ for v in jax.tree.leaves(rest, is_leaf=lambda x: isinstance(x, nnx.Variable))})
        if other:
            raise CacheError(
                f"Sampler needs a model whose only state is its parameters, but this one also holds {other} "
                "Variables, e.g. a KV cache left from an earlier call.\nFix: call model.clear_cache() first."
            )
        self.graphdef, self.params = nnx.split(model)  # the same State, without the empty rest
        self.tokenizer = tokenizer

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        *,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int = 0,
        padding: str = "left",
        pad_id: int = 0,
        stop_id: int | None = None,
    ) -> list[list[int]]:
        """New tokens for each prompt (up to ``max_new_tokens``; cut after ``stop_id``).

        Args:
          prompts: token-id lists of any lengths (each at least one token).
          max_new_tokens: tokens to generate per prompt.
          temperature: 0 for greedy decoding, else the softmax temperature.
          top_k: sample among the k most likely tokens only.
          top_p: sample within the nucleus of probability mass ``top_p``.
          seed: the sampling key.
          padding: ``"left"`` or ``"right"``; both give the same results.
          pad_id: the id used for padding (never attended to).
          stop_id: a token that ends a row (kept in the output), e.g. EOS.
        """
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}.")
        if top_p is not None and not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}.")
        tokens, positions = pad_prompts(prompts, pad_id, side=padding)
        if max_new_tokens < 1:
            return [[] for _ in prompts]
        run = _compiled_generate(
            self.graphdef, tokens.shape[0], tokens.shape[1], max_new_tokens, float(temperature), top_k, top_p,
            stop_id, getattr(self.tokenizer, "vocab_size", None),
        )
        out = np.asarray(run(self.params, tokens, positions, jax.random.key(seed)))
        return [[int(t) for t in row if t >= 0] for row in out]  # -1 marks "after stop_id"

    def generate_text(self, prompts: Sequence[str], *, max_new_tokens: int, **kwargs) -> list[str]:
        """Text continuations of text prompts (BOS prepended, EOS stops a row)."""
        if self.tokenizer is None:
            raise CacheError("generate_text needs a tokenizer: Sampler(model, tokenizer).")
        tok = self.tokenizer
        encoded = [[tok.bos_id, *tok.encode(p)] for p in prompts]
        kwargs.setdefault("stop_id", tok.eos_id)
        kwargs.setdefault("pad_id", tok.pad_id)
        new = self.generate(encoded, max_new_tokens=max_new_tokens, **kwargs)
        return [tok.decode([t for t in row if t != tok.eos_id]) for row in new]
