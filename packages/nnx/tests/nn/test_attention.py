"""MultiHeadAttention, RoPE and the attention functions against softmax(QK^T/sqrt(d))V."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from plait import nnx


def _b(v, ndim):
    """``v`` with leading singleton axes up to ``ndim`` (explicit rank promotion)."""
    return v.reshape((1,) * (ndim - v.ndim) + v.shape)


def _close(a, b, tol=1e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


def _softmax_attention(q, k, v, mask=None):
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(q.shape[-1])
    if mask is not None:
        logits = jnp.where(mask, logits, -1e30)
    w = jax.nn.softmax(logits, axis=-1)
    return jnp.einsum("bhqk,bkhd->bqhd", w, v)


def _project(layer, x):
    return jnp.einsum("btf,fhd->bthd", x, layer.kernel[...]) + _b(layer.bias[...], 4)


def _reference_mha(m, xq, xkv, mask=None, kv_repeat=1):
    q, k, v = _project(m.query, xq), _project(m.key, xkv), _project(m.value, xkv)
    k, v = jnp.repeat(k, kv_repeat, axis=2), jnp.repeat(v, kv_repeat, axis=2)
    ctx = _softmax_attention(q, k, v, mask)
    return jnp.einsum("bthd,hdo->bto", ctx, m.out.kernel[...]) + _b(m.out.bias[...], 3)


def _randomize_biases(m):
    for i, layer in enumerate([m.query, m.key, m.value, m.out]):
        layer.bias[...] = 0.1 * jax.random.normal(jax.random.key(i), layer.bias.shape)


X = jax.random.normal(jax.random.key(0), (2, 5, 8))


def test_mha_parameter_shapes_and_defaults():
    m = nnx.MultiHeadAttention(
        num_heads=2, in_features=8, qkv_features=6, out_features=4, rngs=nnx.Rngs(0)
    )
    assert m.query.kernel.shape == (8, 2, 3) and m.query.bias.shape == (2, 3)
    assert m.out.kernel.shape == (2, 3, 4) and m.out.bias.shape == (4,)
    assert m.head_dim == 3 and m.query_ln is None and m.rngs is None
    assert (m.out.bias[...] == 0).all()
    with pytest.raises(ValueError, match="divisible by num_heads"):
        nnx.MultiHeadAttention(num_heads=3, in_features=8, rngs=nnx.Rngs(0))


def test_mha_self_and_cross_attention_match_reference():
    m = nnx.MultiHeadAttention(2, 8, rngs=nnx.Rngs(0))
    _randomize_biases(m)
    _close(m(X), _reference_mha(m, X, X), tol=1e-4)
    mem = jax.random.normal(jax.random.key(1), (2, 7, 8))
    _close(m(X, mem), _reference_mha(m, X, mem), tol=1e-4)
    _close(m(X, mem, mem), m(X, mem))


def test_mha_mask_and_is_causal():
    m = nnx.MultiHeadAttention(2, 8, rngs=nnx.Rngs(0))
    causal = nnx.make_causal_mask(jnp.ones((2, 5)))
    want = _reference_mha(m, X, X, mask=causal)
    _close(m(X, mask=causal), want, tol=1e-4)
    _close(m(X, is_causal=True), want, tol=1e-4)


def test_mha_grouped_kv_heads():
    m = nnx.MultiHeadAttention(4, 8, num_kv_heads=2, rngs=nnx.Rngs(0))
    assert m.key.kernel.shape == (8, 2, 2) and m.query.kernel.shape == (8, 4, 2)
    _randomize_biases(m)
    _close(m(X), _reference_mha(m, X, X, kv_repeat=2), tol=1e-4)


def test_mha_decode_step_by_step_equals_causal_attention():
    m = nnx.MultiHeadAttention(2, 8, decode=False, rngs=nnx.Rngs(0))
    _randomize_biases(m)
    full = m(X, mask=nnx.make_causal_mask(jnp.ones((2, 5))))
    m.init_cache((2, 5, 8))
    assert m.cached_key.shape == (2, 5, 2, 4) and isinstance(m.cache_index, nnx.Cache)
    steps = [m(X[:, t : t + 1], decode=True) for t in range(5)]
    _close(jnp.concatenate(steps, axis=1), full, tol=1e-4)
    assert int(m.cache_index[...]) == 5


def test_mha_decode_errors():
    m = nnx.MultiHeadAttention(2, 8, decode=True, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="cache is not initialized"):
        m(X[:, :1])
    m.init_cache((2, 5, 8))
    with pytest.raises(ValueError, match="one token at a time"):
        m(X[:, :2])


def test_mha_set_view_initializes_cache():
    m = nnx.MultiHeadAttention(2, 8, rngs=nnx.Rngs(0))
    m.set_view(decode=True, batch_size=3, max_length=4, deterministic=True)
    assert m.decode is True and m.deterministic is True
    assert m.cached_value.shape == (3, 4, 2, 4)


def test_mha_normalize_qk_applies_layer_norms():
    m = nnx.MultiHeadAttention(2, 8, normalize_qk=True, rngs=nnx.Rngs(0))
    assert isinstance(m.query_ln, nnx.LayerNorm) and m.query_ln.bias is None
    q = m.query_ln(_project(m.query, X))
    k = m.key_ln(_project(m.key, X))
    v = _project(m.value, X)
    want = jnp.einsum("bthd,hdo->bto", _softmax_attention(q, k, v), m.out.kernel[...])
    _close(m(X), want + _b(m.out.bias[...], 3), tol=1e-4)


def test_mha_dropout_uses_stream_and_respects_deterministic():
    m = nnx.MultiHeadAttention(2, 8, dropout_rate=0.5, rngs=nnx.Rngs(0, dropout=1))
    assert m.rngs is not None
    with pytest.raises(ValueError, match="deterministic is None"):
        m(X)
    base = m(X, deterministic=True)
    dropped = m(X, deterministic=False)
    assert not jnp.allclose(base, dropped)
    again = m(X, deterministic=False, rngs=nnx.Rngs(dropout=5))
    again2 = m(X, deterministic=False, rngs=nnx.Rngs(dropout=5))
    _close(again, again2)


def test_mha_input_feature_errors():
    m = nnx.MultiHeadAttention(2, 8, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"`inputs_q` with shape \(2, 5, 6\)[\s\S]*in_features"):
        m(jnp.ones((2, 5, 6)))
    with pytest.raises(ValueError, match="inputs_v was given without inputs_k"):
        m(X, inputs_v=X)


def test_mha_sow_weights_records_attention():
    m = nnx.MultiHeadAttention(2, 8, rngs=nnx.Rngs(0))
    m(X, sow_weights=True)
    sown = nnx.state(m, nnx.Intermediate)
    leaves = jax.tree_util.tree_leaves(sown)
    assert len(leaves) == 1 and leaves[0].shape == (2, 2, 5, 5)
    _close(leaves[0].sum(-1), jnp.ones((2, 2, 5)), tol=1e-5)


def test_attention_functions_are_core_ones():
    from plait.core import nn as core_nn

    assert nnx.dot_product_attention is core_nn.dot_product_attention
    assert nnx.make_causal_mask is core_nn.make_causal_mask
    assert nnx.combine_masks is core_nn.combine_masks


# ----------------------------------------------------------------------------- RoPE


def _reference_rope(x, theta=10000.0):
    x = np.asarray(x)
    *_, length, _, dim = x.shape
    half = dim // 2
    out = np.array(x, dtype=np.float64)
    for pos in range(length):
        for i in range(half):
            angle = pos * theta ** (-2 * i / dim)
            a, b = np.array(x[..., pos, :, i]), np.array(x[..., pos, :, half + i])
            out[..., pos, :, i] = a * np.cos(angle) - b * np.sin(angle)
            out[..., pos, :, half + i] = b * np.cos(angle) + a * np.sin(angle)
    return out


def test_rope_matches_explicit_rotation_and_positions():
    x = jax.random.normal(jax.random.key(3), (2, 4, 3, 6))
    rope = nnx.RoPE()
    _close(rope(x), _reference_rope(x), tol=1e-4)
    shifted = rope(x, input_positions=jnp.arange(4) + 2)
    padded = jnp.concatenate([jnp.zeros((2, 2, 3, 6)), x], axis=1)
    _close(shifted, rope(padded)[:, 2:], tol=1e-4)


def test_rope_preserves_relative_dot_products_and_validates():
    q = jax.random.normal(jax.random.key(4), (1, 6, 1, 8))
    rope = nnx.RoPE()
    a = rope(q)
    b = rope(q, input_positions=jnp.arange(6) + 3)
    _close(jnp.einsum("bqhd,bkhd->qk", a, a), jnp.einsum("bqhd,bkhd->qk", b, b), tol=1e-4)
    with pytest.raises(ValueError, match="max_seq_len=4"):
        nnx.RoPE(max_seq_len=4)(q)
    with pytest.raises(ValueError, match="even embedding_size"):
        nnx.RoPE(embedding_size=3)(q)


def test_dot_product_attention_with_rope():
    q, k, v = (jax.random.normal(jax.random.key(i), (1, 4, 2, 8)) for i in range(3))
    rope = nnx.RoPE()
    want = nnx.dot_product_attention(rope(q), rope(k), v)
    _close(nnx.dot_product_attention_with_rope(q, k, v, rope=rope), want)
