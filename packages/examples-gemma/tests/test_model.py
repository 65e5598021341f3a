"""Shapes, parameter counts, configs, and the layers' numerics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from plait import nnx
from plait.examples.gemma import (
    ConfigError,
    Gemma,
    ModelConfig,
    RMSNorm,
    apply_overrides,
    apply_rope,
    count_params,
    get_config,
)


def test_tiny_shapes_and_parameter_count():
    config = get_config("tiny").model
    abstract = nnx.eval_shape(lambda: Gemma(config, rngs=nnx.Rngs(0)))
    params = nnx.state(abstract, nnx.Param)
    assert count_params(abstract) == config.num_params() == 3_543_808
    assert params["embedder"]["embedding"].value.shape == (2048, 256)
    attn = params["layers"][0]["attn"]
    assert attn["q_proj"].value.shape == (256, 4, 64)
    assert attn["kv_proj"].value.shape == (2, 256, 1, 64)
    assert attn["o_proj"].value.shape == (4, 64, 256)
    assert params["layers"][3]["mlp"]["gate_up_proj"].value.shape == (2, 256, 768)
    assert config.layer_types == ("local", "local", "local", "global")


def test_gemma3_4b_eval_shape_allocates_nothing():
    config = get_config("gemma3_4b").model
    abstract = nnx.eval_shape(lambda: Gemma(config, rngs=nnx.Rngs(0)))
    leaves = jax.tree.leaves(nnx.state(abstract))
    assert all(isinstance(leaf, jax.ShapeDtypeStruct) for leaf in leaves)
    n = count_params(abstract)
    assert n == config.num_params()
    assert 3.8e9 < n < 4.0e9  # the text decoder of "4B" (the vision tower is not part of it)
    assert config.layer_types[:6] == ("local",) * 5 + ("global",)
    layers = abstract.layers
    assert layers[5].attn.window is None and layers[4].attn.window == 1024
    assert layers[5].attn.rope_base == 1_000_000.0 and layers[0].attn.rope_base == 10_000.0
    assert nnx.state(abstract, nnx.Param)["layers"][0]["attn"]["query_norm"]["scale"].value.shape == (256,)
    assert leaves[0].dtype == jnp.bfloat16


def test_forward_shapes_and_positions_default(micro_config, randomized):
    model = randomized(Gemma(micro_config, rngs=nnx.Rngs(0)))
    tokens = jax.random.randint(jax.random.key(0), (2, 9), 0, micro_config.vocab_size)
    logits = model(tokens)
    assert logits.shape == (2, 9, micro_config.vocab_size) and logits.dtype == jnp.float32
    explicit = model(tokens, jnp.broadcast_to(jnp.arange(9), (2, 9)))
    np.testing.assert_allclose(logits, explicit, rtol=1e-6)
    # Final soft-cap bounds the logits.
    assert float(jnp.max(jnp.abs(logits))) < micro_config.final_logit_softcap


def test_logits_are_causal(micro_config, randomized):
    model = randomized(Gemma(micro_config, rngs=nnx.Rngs(0)))
    a = jnp.array([[3, 4, 5, 6, 7, 8]])
    b = a.at[0, 4].set(9)
    la, lb = model(a), model(b)
    np.testing.assert_allclose(la[0, :4], lb[0, :4], rtol=1e-6, atol=1e-6)
    assert not np.allclose(la[0, 4:], lb[0, 4:])


def test_bfloat16_compute_is_close_to_float32(micro_config, randomized):
    import dataclasses

    f32 = randomized(Gemma(micro_config, rngs=nnx.Rngs(0)))
    bf16 = Gemma(dataclasses.replace(micro_config, dtype="bfloat16"), rngs=nnx.Rngs(0))
    nnx.update(bf16, nnx.state(f32))
    tokens = jnp.array([[1, 2, 3, 4, 5]])
    assert nnx.state(bf16, nnx.Param)["embedder"]["embedding"].value.dtype == jnp.float32  # master copy
    np.testing.assert_allclose(bf16(tokens), f32(tokens), atol=0.15)


def test_rmsnorm_uses_one_plus_scale():
    norm = RMSNorm(4)
    norm.scale.value = jnp.array([0.0, 1.0, -1.0, 0.5])
    x = jnp.array([[1.0, 2.0, 3.0, 4.0]])
    rms = np.sqrt(np.mean(np.square([1.0, 2.0, 3.0, 4.0])) + 1e-6)
    np.testing.assert_allclose(norm(x), [[1.0 / rms, 4.0 / rms, 0.0, 6.0 / rms]], rtol=1e-6)


def test_rope_rotates_pairs_of_halves():
    x = jnp.arange(1.0, 5.0).reshape(1, 1, 1, 4)
    out = apply_rope(x, jnp.array([[3]]), base=100.0)
    angles = 3 * 100.0 ** -(np.arange(2) * 2 / 4)
    x1, x2 = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    want = np.concatenate([x1 * np.cos(angles) - x2 * np.sin(angles), x2 * np.cos(angles) + x1 * np.sin(angles)])
    np.testing.assert_allclose(out[0, 0, 0], want, rtol=1e-5)
    # A rotation: relative positions only, so <rope(q, i), rope(k, j)> depends on i - j.
    q, k = jnp.ones((1, 1, 1, 4)), jnp.arange(4.0).reshape(1, 1, 1, 4)
    dot = lambda i, j: float(jnp.sum(apply_rope(q, jnp.array([[i]]), base=100.0) * apply_rope(k, jnp.array([[j]]), base=100.0)))  # noqa: E731
    assert dot(5, 2) == pytest.approx(dot(13, 10), rel=1e-5)


def test_config_validation_and_overrides():
    with pytest.raises(ConfigError, match="multiple of num_kv_heads"):
        ModelConfig(num_heads=4, num_kv_heads=3)
    with pytest.raises(ConfigError, match="'local'/'global'"):
        ModelConfig(attention_pattern=("local", "sliding"))
    config = apply_overrides(
        get_config("tiny"),
        {"model.num_layers": "2", "learning_rate": "1", "model.attn_logit_softcap": "50.0",
         "model.attention_pattern": "('global',)", "model.dtype": "bfloat16"},
    )
    assert config.model.num_layers == 2 and config.learning_rate == 1.0
    assert config.model.attn_logit_softcap == 50.0 and config.model.layer_types == ("global", "global")
    assert config.model.dtype == "bfloat16"
    with pytest.raises(ConfigError, match="no such field"):
        apply_overrides(get_config("tiny"), {"model.layers": "2"})
    with pytest.raises(ConfigError, match="expected a int"):
        apply_overrides(get_config("tiny"), {"batch_size": "'big'"})
