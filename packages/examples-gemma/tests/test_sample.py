"""Sampling: greedy is deterministic and equals a cache-free argmax loop; top-k/top-p restrict support."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from plait import nnx
from plait.examples.gemma import ByteTokenizer, CacheError, Gemma, Sampler, filter_logits
from plait.examples.gemma._sample import choose_tokens


def greedy_without_cache(forward, prompt, steps, length=16):
    """Full forward passes over a fixed-size buffer (causal: what follows a position never matters)."""
    buffer = np.zeros((1, length), np.int32)
    buffer[0, : len(prompt)] = prompt
    for i in range(len(prompt), len(prompt) + steps):
        buffer[0, i] = int(jnp.argmax(forward(buffer)[0, i - 1]))
    return buffer[0, len(prompt) : len(prompt) + steps].tolist()


def test_greedy_matches_uncached_argmax_for_ragged_prompts(micro_config, randomized, jitted_forward):
    model = randomized(Gemma(micro_config, rngs=nnx.Rngs(0)), scale=1.0)
    sampler = Sampler(model)
    prompts = [[3, 4, 5, 6, 7], [8, 9]]
    left = sampler.generate(prompts, max_new_tokens=6, temperature=0.0, padding="left")
    right = sampler.generate(prompts, max_new_tokens=6, temperature=0.0, padding="right")
    assert left == right
    forward = jitted_forward(model)
    assert left == [greedy_without_cache(forward, p, 6) for p in prompts]
    assert sampler.generate(prompts, max_new_tokens=6, temperature=0.0, seed=7) == left


def test_sampling_is_seeded_and_stops_at_stop_id(micro_config, randomized):
    sampler = Sampler(randomized(Gemma(micro_config, rngs=nnx.Rngs(0))))
    a = sampler.generate([[1, 2, 3]] * 4, max_new_tokens=8, temperature=1.0, seed=3)
    assert a == sampler.generate([[1, 2, 3]] * 4, max_new_tokens=8, temperature=1.0, seed=3)
    assert a != sampler.generate([[1, 2, 3]] * 4, max_new_tokens=8, temperature=1.0, seed=4)
    stop = a[0][2]
    cut = sampler.generate([[1, 2, 3]] * 4, max_new_tokens=8, temperature=1.0, seed=3, stop_id=stop)
    assert cut[0] == a[0][: a[0].index(stop) + 1]


def test_top_k_and_top_p_restrict_the_support():
    probs = jnp.array([0.4, 0.25, 0.15, 0.1, 0.06, 0.04])
    logits = jnp.broadcast_to(jnp.log(probs), (2000, 6))
    keys = jax.random.key(0)
    top_k = np.asarray(choose_tokens(logits, keys, temperature=1.0, top_k=2, top_p=None))
    assert set(top_k.tolist()) == {0, 1}
    top_p = np.asarray(choose_tokens(logits, keys, temperature=1.0, top_k=None, top_p=0.75))
    assert set(top_p.tolist()) == {0, 1, 2}  # 0.4 + 0.25 < 0.75 <= 0.4 + 0.25 + 0.15
    both = np.asarray(choose_tokens(logits, keys, temperature=1.0, top_k=2, top_p=0.3))
    assert set(both.tolist()) == {0}
    unrestricted = np.asarray(choose_tokens(logits, keys, temperature=1.0, top_k=None, top_p=None))
    assert set(unrestricted.tolist()) == set(range(6))
    # Within the nucleus, frequencies follow the renormalised probabilities.
    assert np.mean(top_p == 0) == pytest.approx(0.4 / 0.8, abs=0.05)
    np.testing.assert_array_equal(np.isfinite(filter_logits(jnp.log(probs)[None], top_p=1.0)), [[True] * 6])


def test_text_round_trip_and_errors(micro_config):
    import dataclasses

    # More model ids (300) than tokenizer ids (259): the extra ids are never sampled.
    config = dataclasses.replace(micro_config, vocab_size=300)
    model = Gemma(config, rngs=nnx.Rngs(0))
    model.embedder.embedding.value = model.embedder.embedding[...].at[259:].multiply(50.0)
    sampler = Sampler(model, ByteTokenizer())
    sampled = sampler.generate([[1, 70]] * 8, max_new_tokens=6, temperature=1.0, seed=1)
    assert max(max(row) for row in sampled) < 259
    assert max(max(row) for row in Sampler(model).generate([[1, 70]] * 8, max_new_tokens=6, temperature=1.0, seed=1)) >= 259
    with pytest.raises(ValueError, match="top_p must be in"):
        sampler.generate([[1]], max_new_tokens=2, top_p=1.5)
    with pytest.raises(ValueError, match="at least one token"):
        sampler.generate([[1], []], max_new_tokens=2)
    model.init_cache(1, 4)
    with pytest.raises(CacheError, match="clear_cache"):
        Sampler(model)
