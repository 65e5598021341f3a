"""Cached decoding (prefill + one token at a time) equals the full forward pass."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from plait import nnx
from plait.examples.gemma import CacheError, Gemma, pad_prompts


@nnx.jit
def cached_call(model, tokens, positions):
    """One cached call; nnx.jit writes the updated cache back into the model."""
    return model(tokens, positions, use_cache=True)


def decode_incrementally(model, tokens, positions, prefill):
    """Logits of the prefill chunk, then of every later column fed alone."""
    model.init_cache(tokens.shape[0], int(positions.max()) + 1)
    outs = [cached_call(model, tokens[:, :prefill], positions[:, :prefill])]
    for i in range(prefill, tokens.shape[1]):
        outs.append(cached_call(model, tokens[:, i : i + 1], positions[:, i : i + 1]))
    model.clear_cache()
    return jnp.concatenate(outs, axis=1)


@pytest.mark.parametrize("prefill", [1, 6])  # 6 > the local window (3): the ring wraps during prefill
def test_cache_equals_full_forward(micro_config, prefill, randomized, jitted_forward):
    model = randomized(Gemma(micro_config, rngs=nnx.Rngs(0)))
    tokens = jax.random.randint(jax.random.key(1), (2, 11), 0, micro_config.vocab_size)
    positions = jnp.broadcast_to(jnp.arange(11), (2, 11))
    full = jitted_forward(model)(tokens)
    cached = decode_incrementally(model, tokens, positions, prefill)
    np.testing.assert_allclose(cached, full, rtol=1e-5, atol=1e-5)


def test_local_layer_cache_is_a_window_sized_ring(micro_config):
    model = Gemma(micro_config, rngs=nnx.Rngs(0))
    model.init_cache(2, 50)
    local, global_ = model.layers[0].attn, model.layers[1].attn
    assert local.cached_key.shape == (2, 3, 2, 8) and global_.cached_key.shape == (2, 50, 2, 8)
    assert isinstance(local.cached_key, nnx.Cache)
    model.clear_cache()
    assert not local.has_cache()


@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_batch_matches_each_prompt_alone(micro_config, side, randomized, jitted_forward):
    model = randomized(Gemma(micro_config, rngs=nnx.Rngs(0)))
    prompts = [[5, 6, 7, 8, 9, 10, 11], [12, 13]]
    continuation = [[20, 21, 22, 23], [24, 25, 26, 27]]
    tokens, positions = pad_prompts(prompts, pad_id=0, side=side)
    model.init_cache(2, 7 + 4)
    prefill = cached_call(model, jnp.asarray(tokens), jnp.asarray(positions))
    next_pos = positions.max(axis=1) + 1
    steps = []
    for i in range(4):
        column = jnp.asarray([[c[i]] for c in continuation])
        steps.append(cached_call(model, column, jnp.asarray(next_pos + i)[:, None])[:, 0])
    model.clear_cache()
    forward = jitted_forward(model)
    for row, (prompt, cont) in enumerate(zip(prompts, continuation, strict=True)):
        # Right-padded to one length so that a single compiled forward serves both rows.
        padded = np.zeros((1, 11), np.int32)
        padded[0, : len(prompt) + 4] = prompt + cont
        alone = forward(padded)[0]
        real = np.asarray(positions[row]) >= 0
        np.testing.assert_allclose(np.asarray(prefill[row])[real], alone[: len(prompt)], rtol=1e-5, atol=1e-5)
        for i in range(4):
            np.testing.assert_allclose(steps[i][row], alone[len(prompt) + i], rtol=1e-5, atol=1e-5)


def test_use_cache_without_cache_explains(micro_config):
    model = Gemma(micro_config, rngs=nnx.Rngs(0))
    with pytest.raises(CacheError, match="init_cache"):
        model(jnp.zeros((1, 2), jnp.int32), use_cache=True)
