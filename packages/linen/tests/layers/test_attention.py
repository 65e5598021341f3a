import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from plait import linen as nn

KEY = jax.random.key(0)


def broadcasting():
    """Hand-written references broadcast like NumPy; the layers run under 'raise'."""
    return jax.numpy_rank_promotion("allow")


def rand(shape, seed=1):
    return jax.random.normal(jax.random.key(seed), shape)


def _reference_attention(params, q_in, kv_in, num_heads, mask=None):
    """Multi-head attention written out with einsums."""

    def project(p, x):
        return jnp.einsum("...d,dhk->...hk", x, p["kernel"]) + p["bias"]

    q = project(params["query"], q_in)
    k = project(params["key"], kv_in)
    v = project(params["value"], kv_in)
    logits = jnp.einsum("...qhd,...khd->...hqk", q, k) / jnp.sqrt(q.shape[-1])
    if mask is not None:
        logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
    weights = jax.nn.softmax(logits, axis=-1)
    heads = jnp.einsum("...hqk,...khd->...qhd", weights, v)
    out = params["out"]
    return jnp.einsum("...hd,hdf->...f", heads, out["kernel"]) + out["bias"]


def reference_attention(*args, **kwargs):
    with broadcasting():
        return _reference_attention(*args, **kwargs)


def randomize(variables, seed=5):
    leaves, tree = jax.tree.flatten(variables)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree.unflatten(
        tree, [jax.random.normal(k, x.shape) for k, x in zip(keys, leaves, strict=True)]
    )


def test_param_layout():
    layer = nn.MultiHeadDotProductAttention(num_heads=2, qkv_features=8, out_features=5)
    variables = layer.init(KEY, jnp.ones((3, 4, 6)))
    assert jax.tree.map(jnp.shape, variables["params"]) == {
        "query": {"kernel": (6, 2, 4), "bias": (2, 4)},
        "key": {"kernel": (6, 2, 4), "bias": (2, 4)},
        "value": {"kernel": (6, 2, 4), "bias": (2, 4)},
        "out": {"kernel": (2, 4, 5), "bias": (5,)},
    }


def test_self_and_cross_attention_match_reference():
    layer = nn.MultiHeadDotProductAttention(num_heads=2, qkv_features=8)
    q_in, kv_in = rand((2, 3, 6)), rand((2, 5, 6), seed=2)
    variables = randomize(layer.init(KEY, q_in, kv_in))
    p = variables["params"]
    np.testing.assert_allclose(
        layer.apply(variables, q_in, kv_in),
        reference_attention(p, q_in, kv_in, 2),
        rtol=1e-4,
        atol=1e-5,
    )
    np.testing.assert_allclose(
        layer.apply(variables, q_in), reference_attention(p, q_in, q_in, 2), rtol=1e-4, atol=1e-5
    )


def test_mask_hides_keys():
    layer = nn.MultiHeadDotProductAttention(num_heads=2)
    x = rand((1, 4, 4))
    variables = randomize(layer.init(KEY, x))
    mask = nn.make_causal_mask(jnp.ones((1, 4)))
    out = layer.apply(variables, x, mask=mask)
    np.testing.assert_allclose(
        out, reference_attention(variables["params"], x, x, 2, mask), rtol=1e-4, atol=1e-5
    )
    # The first position only sees itself, so later inputs cannot change it.
    changed = x.at[:, 1:].set(0.0)
    np.testing.assert_allclose(
        layer.apply(variables, changed, mask=mask)[:, 0], out[:, 0], rtol=1e-5, atol=1e-6
    )


def test_decode_cache_reproduces_causal_attention_step_by_step():
    layer = nn.MultiHeadDotProductAttention(num_heads=2, qkv_features=4, decode=True)
    x = rand((2, 5, 4))
    variables = layer.init(KEY, x)
    cache = variables["cache"]
    assert jax.tree.map(jnp.shape, cache) == {
        "cached_key": (2, 5, 2, 2),
        "cached_value": (2, 5, 2, 2),
        "cache_index": (),
    }
    full = nn.MultiHeadDotProductAttention(num_heads=2, qkv_features=4).apply(
        {"params": variables["params"]}, x, mask=nn.make_causal_mask(jnp.ones((2, 5)))
    )
    steps = []
    for t in range(5):
        y, updates = layer.apply(
            {"params": variables["params"], "cache": cache}, x[:, t : t + 1], mutable=["cache"]
        )
        cache = updates["cache"]
        steps.append(y)
    assert int(cache["cache_index"]) == 5
    np.testing.assert_allclose(jnp.concatenate(steps, axis=1), full, rtol=1e-4, atol=1e-5)


def test_decode_rejects_more_than_one_position():
    layer = nn.MultiHeadDotProductAttention(num_heads=1, decode=True)
    variables = layer.init(KEY, jnp.ones((1, 4, 2)))
    with pytest.raises(ValueError, match=r"one position per call.*\(1, 1, 1, 2\).*\(1, 2, 1, 2\)"):
        layer.apply(variables, jnp.ones((1, 2, 2)), mutable=["cache"])


def test_normalize_qk_adds_layer_norms_without_bias():
    layer = nn.MultiHeadDotProductAttention(num_heads=2, qkv_features=8, normalize_qk=True)
    params = layer.init(KEY, jnp.ones((1, 3, 4)))["params"]
    assert jax.tree.map(jnp.shape, params["query_ln"]) == {"scale": (4,)}
    assert jax.tree.map(jnp.shape, params["key_ln"]) == {"scale": (4,)}


def test_dropout_needs_deterministic_and_uses_dropout_rng():
    layer = nn.MultiHeadDotProductAttention(num_heads=1, dropout_rate=0.5)
    x = rand((1, 6, 2))
    variables = layer.init(KEY, x, deterministic=True)
    with pytest.raises(Exception, match="deterministic"):
        layer.apply(variables, x)
    det = layer.apply(variables, x, deterministic=True)
    a = layer.apply(variables, x, deterministic=False, rngs={"dropout": jax.random.key(1)})
    b = layer.apply(variables, x, deterministic=False, dropout_rng=jax.random.key(1))
    c = layer.apply(variables, x, deterministic=False, dropout_rng=jax.random.key(2))
    assert not np.allclose(a, det)
    assert not np.allclose(b, c)


def test_sow_weights_records_attention_weights():
    layer = nn.MultiHeadDotProductAttention(num_heads=2)
    x = rand((1, 3, 4))
    variables = layer.init(KEY, x)
    _, state = layer.apply(variables, x, sow_weights=True, mutable=["intermediates"])
    (weights,) = state["intermediates"]["attention_weights"]
    assert weights.shape == (1, 2, 3, 3)
    np.testing.assert_allclose(weights.sum(-1), np.ones((1, 2, 3)), rtol=1e-5)


def test_self_attention_warns_and_equals_parent():
    x = rand((1, 3, 4))
    parent = nn.MultiHeadDotProductAttention(num_heads=2)
    variables = parent.init(KEY, x)
    with pytest.warns(DeprecationWarning, match="SelfAttention will be deprecated"):
        out = nn.SelfAttention(num_heads=2).apply(variables, x)
    np.testing.assert_allclose(out, parent.apply(variables, x), rtol=1e-6)


def test_inputs_kv_is_deprecated_and_exclusive():
    layer = nn.MultiHeadDotProductAttention(num_heads=1)
    x = jnp.ones((1, 2, 2))
    variables = layer.init(KEY, x)
    with pytest.warns(DeprecationWarning, match="inputs_kv is deprecated"):
        layer.apply(variables, x, inputs_kv=x)
    with pytest.raises(ValueError, match="either inputs_kv or inputs_k/inputs_v"):
        layer.apply(variables, x, x, inputs_kv=x)
    with pytest.raises(ValueError, match="inputs_k is None but inputs_v is given"):
        layer.apply(variables, x, inputs_v=x)


def test_heads_must_divide_qkv_features():
    with pytest.raises(ValueError, match="qkv_features=5 is not divisible by num_heads=2"):
        nn.MultiHeadDotProductAttention(num_heads=2, qkv_features=5).init(KEY, jnp.ones((1, 2, 3)))


def test_custom_attention_fn_gets_only_the_keywords_it_declares():
    seen = {}

    def attention_fn(query, key, value, mask=None):
        seen["mask"] = mask
        return nn.dot_product_attention(query, key, value, mask=mask)

    layer = nn.MultiHeadDotProductAttention(num_heads=1, attention_fn=attention_fn)
    layer.init(KEY, jnp.ones((1, 2, 2)))
    assert "mask" in seen


def test_dot_product_attention_matches_hand_computation():
    q, k, v = rand((2, 3, 2, 4)), rand((2, 5, 2, 4), 2), rand((2, 5, 2, 4), 3)
    weights = jax.nn.softmax(jnp.einsum("bqhd,bkhd->bhqk", q, k) / 2.0, axis=-1)
    np.testing.assert_allclose(
        nn.dot_product_attention_weights(q, k), weights, rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        nn.dot_product_attention(q, k, v),
        jnp.einsum("bhqk,bkhd->bqhd", weights, v),
        rtol=1e-5,
        atol=1e-6,
    )


def test_multi_head_attention_alias_has_its_own_auto_name():
    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.MultiHeadAttention(num_heads=1)(x)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        params = Model().init(KEY, jnp.ones((1, 2, 2)))["params"]
    assert list(params) == ["MultiHeadAttention_0"]
