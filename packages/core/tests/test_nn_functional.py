"""plait.core.nn against hand-written jnp math."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from plait.core import nn
from plait.core.nn import attention, dtypes, initializers, pooling

KEY = jax.random.key(0)


def _close(a, b, tol=1e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


# ----------------------------------------------------------------------------- initializers


def test_zeros_ones_init_fill_with_constants():
    assert (initializers.zeros_init()(KEY, (2, 3), jnp.float32) == 0).all()
    out = initializers.ones_init()(KEY, (4,), jnp.bfloat16)
    assert out.dtype == jnp.bfloat16 and (out == 1).all()


def test_constant_and_uniform_ranges():
    assert (initializers.constant(3.5)(KEY, (2,)) == 3.5).all()
    u = initializers.uniform(scale=0.5)(KEY, (1000,))
    assert float(u.min()) >= 0.0 and float(u.max()) < 0.5


def test_lecun_normal_matches_variance_scaling_fan_in_truncated():
    shape = (64, 32)
    a = initializers.lecun_normal()(KEY, shape)
    b = initializers.variance_scaling(1.0, "fan_in", "truncated_normal")(KEY, shape)
    _close(a, b)
    # fan_in = 64 -> std 1/8 (truncated normal rescaled to that std)
    assert abs(float(jnp.std(a)) - 1 / 8) < 0.02


@pytest.mark.parametrize(
    "name,mode,dist,scale",
    [
        ("glorot_uniform", "fan_avg", "uniform", 1.0),
        ("xavier_normal", "fan_avg", "truncated_normal", 1.0),
        ("he_normal", "fan_in", "truncated_normal", 2.0),
        ("kaiming_uniform", "fan_in", "uniform", 2.0),
        ("lecun_uniform", "fan_in", "uniform", 1.0),
    ],
)
def test_named_initializers_are_variance_scaling(name, mode, dist, scale):
    got = getattr(initializers, name)()(KEY, (6, 5))
    want = initializers.variance_scaling(scale, mode, dist)(KEY, (6, 5))
    _close(got, want)


def test_orthogonal_gives_orthonormal_columns():
    w = initializers.orthogonal()(KEY, (6, 4))
    _close(w.T @ w, jnp.eye(4))


def test_delta_orthogonal_is_orthogonal_at_center_only():
    w = initializers.delta_orthogonal()(KEY, (3, 3, 4, 4))
    center = w[1, 1]
    _close(center.T @ center, jnp.eye(4))
    assert float(jnp.abs(w[0, 0]).sum()) == 0.0


def test_normal_and_truncated_normal_stddev():
    n = initializers.normal(stddev=2.0)(KEY, (20000,))
    assert abs(float(jnp.std(n)) - 2.0) < 0.1
    t = initializers.truncated_normal(stddev=1.0, lower=-1.0, upper=1.0)(KEY, (1000,))
    assert float(jnp.abs(t).max()) <= 1.0


# ----------------------------------------------------------------------------- activations


def test_activations_match_formulas():
    xn = np.linspace(-3.0, 3.0, 13, dtype=np.float32)
    x = jnp.asarray(xn)
    sigmoid = 1 / (1 + np.exp(-xn))
    _close(nn.relu(x), np.maximum(xn, 0))
    _close(nn.sigmoid(x), sigmoid)
    _close(nn.silu(x), xn * sigmoid)
    assert nn.swish is nn.silu and nn.hard_swish is nn.hard_silu
    _close(nn.softplus(x), np.log1p(np.exp(xn)))
    _close(nn.leaky_relu(x, 0.1), np.where(xn > 0, xn, 0.1 * xn))
    _close(nn.elu(x), np.where(xn > 0, xn, np.exp(xn) - 1))
    _close(nn.celu(x, 2.0), np.where(xn > 0, xn, 2.0 * (np.exp(xn / 2.0) - 1)))
    _close(nn.soft_sign(x), xn / (np.abs(xn) + 1))
    _close(nn.log_sigmoid(x), -np.log1p(np.exp(-xn)))
    _close(nn.relu6(x * 3), np.clip(xn * 3, 0, 6))
    _close(nn.hard_tanh(x), np.clip(xn, -1, 1))
    _close(nn.hard_sigmoid(x), np.clip(xn + 3, 0, 6) / 6)
    _close(nn.hard_silu(x), xn * np.clip(xn + 3, 0, 6) / 6)
    _close(nn.tanh(x), np.tanh(xn))
    _close(nn.identity(x), xn)
    alpha, scale = 1.6732632423543772, 1.0507009873554805
    _close(nn.selu(x), scale * np.where(xn > 0, xn, alpha * (np.exp(xn) - 1)))
    exact = 0.5 * xn * (1 + np.vectorize(math.erf)(xn / np.sqrt(2.0)))
    _close(nn.gelu(x, approximate=False), exact)
    assert float(np.abs(np.asarray(nn.gelu(x)) - exact).max()) < 1e-2  # tanh approximation


def test_softmax_family():
    x = jnp.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    e = jnp.exp(x)
    _close(nn.softmax(x), e / e.sum(-1, keepdims=True))
    _close(nn.log_softmax(x), x - jnp.log(e.sum(-1, keepdims=True)))
    _close(nn.logsumexp(x, axis=-1), jnp.log(e.sum(-1)))
    a, b = jnp.split(x, [1], axis=-1)
    _close(nn.glu(jnp.array([[1.0, 2.0]])), jnp.array([[1.0 / (1 + jnp.exp(-2.0))]]))
    del a, b
    s = nn.standardize(x[:1])
    _close(s, (x[:1] - 2.0) / jnp.sqrt(2 / 3 + 1e-5))
    assert nn.normalize is nn.standardize
    _close(nn.one_hot(jnp.array([0, 2]), 3), jnp.array([[1.0, 0, 0], [0, 0, 1.0]]))


# ----------------------------------------------------------------------------- dtypes


def test_canonicalize_dtype_inference_and_inexact():
    f32, bf16, i32 = jnp.ones(1), jnp.ones(1, jnp.bfloat16), jnp.ones(1, jnp.int32)
    assert dtypes.canonicalize_dtype(bf16, f32) == jnp.float32
    assert dtypes.canonicalize_dtype(bf16, None) == jnp.bfloat16
    assert dtypes.canonicalize_dtype(i32) == jnp.float32
    assert dtypes.canonicalize_dtype(i32, inexact=False) == jnp.int32
    assert dtypes.canonicalize_dtype(f32, dtype=jnp.bfloat16) == jnp.bfloat16
    with pytest.raises(nn.NNDtypeError, match="int32 is not a floating"):
        dtypes.canonicalize_dtype(f32, dtype=jnp.int32)


def test_promote_dtype_keeps_container_and_none():
    a, b, c = dtypes.promote_dtype((jnp.ones(2, jnp.bfloat16), None, jnp.ones(2)))
    assert a.dtype == jnp.float32 and b is None and c.dtype == jnp.float32
    out = dtypes.promote_dtype([jnp.ones(1)], dtype=jnp.bfloat16)
    assert isinstance(out, list) and out[0].dtype == jnp.bfloat16
    listed = dtypes.promote_dtype_args(jnp.ones(1, jnp.int32), jnp.ones(1, jnp.bfloat16))
    assert isinstance(listed, list) and [x.dtype for x in listed] == [jnp.bfloat16] * 2


# ----------------------------------------------------------------------------- pooling


def _windows_2d(x, k, s):
    """Reference: explicit python loop over kxk windows of (B, H, W, C), in numpy."""
    x = np.asarray(x)
    b, h, w, c = x.shape
    out = []
    for i in range(0, h - k + 1, s):
        row = []
        for j in range(0, w - k + 1, s):
            row.append(x[:, i : i + k, j : j + k, :])
        out.append(row)
    return out


def test_max_min_avg_pool_valid_match_loops():
    x = jax.random.normal(KEY, (2, 5, 5, 3))
    wins = _windows_2d(x, 2, 1)
    ref_max = np.stack([np.stack([w.max((1, 2)) for w in r], 1) for r in wins], 1)
    ref_min = np.stack([np.stack([w.min((1, 2)) for w in r], 1) for r in wins], 1)
    ref_avg = np.stack([np.stack([w.mean((1, 2)) for w in r], 1) for r in wins], 1)
    _close(pooling.max_pool(x, (2, 2)), ref_max)
    _close(pooling.min_pool(x, (2, 2)), ref_min)
    _close(pooling.avg_pool(x, (2, 2)), ref_avg)


def test_pool_strides_and_unbatched_input():
    x = jnp.arange(8.0).reshape(8, 1)
    out = pooling.max_pool(x, (2,), strides=(2,))
    assert out.shape == (4, 1)
    _close(out[:, 0], jnp.array([1.0, 3.0, 5.0, 7.0]))
    batched = pooling.max_pool(x[None], (2,), strides=(2,))
    _close(batched[0], out)


def test_pool_multiple_batch_axes():
    x = jax.random.normal(KEY, (2, 3, 6, 4))
    out = pooling.avg_pool(x, (3,), strides=(3,))
    _close(out, x.reshape(2, 3, 2, 3, 4).mean(3))


def test_avg_pool_same_padding_count_include_pad():
    x = jnp.ones((1, 3, 1))
    with_pad = pooling.avg_pool(x, (3,), padding="SAME")
    _close(with_pad[0, :, 0], jnp.array([2 / 3, 1.0, 2 / 3]))
    without = pooling.avg_pool(x, (3,), padding="SAME", count_include_pad=False)
    _close(without[0, :, 0], jnp.ones(3))
    explicit = pooling.avg_pool(x, (3,), padding=((1, 1),), count_include_pad=False)
    _close(explicit, without)


def test_max_pool_explicit_padding_never_wins():
    x = -jnp.ones((1, 2, 1))
    out = pooling.max_pool(x, (2,), padding=((1, 1),))
    _close(out[0, :, 0], -jnp.ones(3))


def test_pool_shape_errors():
    with pytest.raises(nn.NNShapeError, match="rank at least 3"):
        pooling.max_pool(jnp.ones((4,)), (2, 2))
    with pytest.raises(nn.NNShapeError, match="strides \\(1,\\) has 1 entries"):
        pooling.max_pool(jnp.ones((1, 4, 4, 1)), (2, 2), strides=(1,))
    with pytest.raises(nn.NNShapeError, match="1 \\(low, high\\) pairs"):
        pooling.max_pool(jnp.ones((1, 4, 4, 1)), (2, 2), padding=((0, 0),))


# ----------------------------------------------------------------------------- attention


def _jitted(fn):
    """``fn`` compiled as one program (faster than op-by-op); keywords are static."""

    def call(*arrays, **kwargs):
        return jax.jit(functools.partial(fn, **kwargs))(*arrays)

    return call


_attn = _jitted(attention.dot_product_attention)
_attn_weights = _jitted(attention.dot_product_attention_weights)


def _reference_attention(q, k, v, mask=None, bias=None):
    """softmax(q k^T / sqrt(d) + bias, masked) v, in numpy (no compilation)."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    logits = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(q.shape[-1])
    if bias is not None:
        logits = logits + np.asarray(bias)
    if mask is not None:
        logits = np.where(np.asarray(mask), logits, -1e30)
    w = np.exp(logits - logits.max(-1, keepdims=True))
    w = w / w.sum(-1, keepdims=True)
    return w, np.einsum("bhqk,bkhd->bqhd", w, v)


def _qkv(b=2, t=4, s=5, h=3, d=8, kv_heads=None):
    k1, k2, k3 = jax.random.split(KEY, 3)
    kv_heads = kv_heads or h
    q = jax.random.normal(k1, (b, t, h, d))
    k = jax.random.normal(k2, (b, s, kv_heads, d))
    v = jax.random.normal(k3, (b, s, kv_heads, d))
    return q, k, v


def test_attention_matches_reference():
    q, k, v = _qkv()
    want_w, want = _reference_attention(q, k, v)
    _close(_attn_weights(q, k), want_w)
    _close(_attn(q, k, v), want)


def test_attention_mask_and_bias():
    q, k, v = _qkv()
    mask = jax.random.bernoulli(jax.random.key(1), 0.7, (2, 1, 4, 5)).at[..., 0].set(True)
    bias = jax.random.normal(jax.random.key(2), (2, 3, 4, 5))
    want_w, want = _reference_attention(q, k, v, mask=mask, bias=bias)
    got_w = _attn_weights(q, k, bias=bias, mask=mask)
    _close(got_w, want_w)
    assert float(jnp.where(mask, 0.0, got_w).max()) == 0.0
    _close(_attn(q, k, v, bias=bias, mask=mask), want)


def test_attention_is_causal_equals_causal_mask():
    q, k, v = _qkv(t=5, s=5)
    causal = attention.make_causal_mask(jnp.ones((2, 5)))
    _close(
        _attn(q, k, v, is_causal=True),
        _attn(q, k, v, mask=causal),
    )


def test_attention_grouped_query_heads_share_kv():
    q, k, v = _qkv(h=4, kv_heads=2)
    out = _attn(q, k, v)
    # Query heads 0,1 use kv head 0; heads 2,3 use kv head 1.
    _, want = _reference_attention(q, jnp.repeat(k, 2, axis=2), jnp.repeat(v, 2, axis=2))
    _close(out, want)


def test_attention_without_batch_axes_and_extra_batch_axes():
    q, k, v = _qkv(b=1)
    _close(_attn(q[0], k[0], v[0]), _reference_attention(q, k, v)[1][0])
    q2, k2, v2 = (x.reshape((1, 1) + x.shape[1:]) for x in (q, k, v))
    _close(_attn(q2, k2, v2)[0], _reference_attention(q, k, v)[1])


def test_attention_dtype_and_fp32_softmax():
    q, k, v = _qkv()
    out = _attn(q, k, v, dtype=jnp.bfloat16)
    assert out.dtype == jnp.bfloat16
    _close(out.astype(jnp.float32), _reference_attention(q, k, v)[1], tol=5e-2)
    w = _attn_weights(q.astype(jnp.bfloat16), k.astype(jnp.bfloat16), force_fp32_for_softmax=True)
    assert w.dtype == jnp.bfloat16


def test_attention_dropout_broadcast_and_scaling():
    q, k, v = _qkv()
    rng = jax.random.key(3)
    w = _attn_weights(q, k, dropout_rng=rng, dropout_rate=0.5)
    base = _attn_weights(q, k)
    keep = jax.random.bernoulli(rng, 0.5, (1, 1, 4, 5))
    _close(w, base * keep / 0.5)
    w2 = _attn_weights(q, k, dropout_rng=rng, dropout_rate=0.5, broadcast_dropout=False)
    keep2 = jax.random.bernoulli(rng, 0.5, base.shape)
    _close(w2, base * keep2 / 0.5)
    same = _attn_weights(q, k, dropout_rate=0.5, deterministic=True)
    _close(same, base)
    with pytest.raises(ValueError, match="dropout_rng is None"):
        _attn_weights(q, k, dropout_rate=0.5)


def test_attention_sows_weights_into_module():
    recorded = []

    class Recorder:
        def sow(self, collection, name, value):
            recorded.append((collection, name, value))
            return True

    q, k, v = _qkv()
    attention.dot_product_attention(q, k, v, module=Recorder())
    ((collection, name, value),) = recorded
    assert (collection, name) == ("intermediates", "attention_weights")
    _close(value, _reference_attention(q, k, v)[0])


def test_attention_custom_einsums_are_used():
    calls = []

    def spy(*args, **kwargs):
        calls.append(args[0])
        return jnp.einsum(*args, **kwargs)

    q, k, v = _qkv()
    out = _attn(q, k, v, qk_attn_weights_einsum=spy, attn_weights_value_einsum=spy)
    assert calls == ["...qhd,...khd->...hqk", "...hqk,...khd->...qhd"]
    _close(out, _reference_attention(q, k, v)[1])


def test_attention_shape_errors_are_explained():
    q, k, v = _qkv()
    with pytest.raises(nn.NNShapeError, match="same depth per head"):
        _attn(q, k[..., :4], v)
    with pytest.raises(nn.NNShapeError, match="multiple of it"):
        _attn(q, k[..., :2, :], v[..., :2, :])
    with pytest.raises(nn.NNShapeError, match="same batch axes"):
        _attn(q, k[:1], v[:1])
    with pytest.raises(nn.NNShapeError, match="same rank"):
        _attn(q, k[0], v[0])
    with pytest.raises(nn.NNShapeError, match="key and value must agree"):
        _attn(q, k, v[:, :3])


def test_make_attention_mask_and_combine():
    qi = jnp.array([[1, 1, 0]])
    ki = jnp.array([[1, 0, 1, 1]])
    m = attention.make_attention_mask(qi, ki)
    assert m.shape == (1, 1, 3, 4) and m.dtype == jnp.float32
    _close(m[0, 0], qi[0][:, None] * ki[0][None, :])
    m2 = attention.make_attention_mask(qi, ki, extra_batch_dims=2, dtype=jnp.bool_)
    assert m2.shape == (1, 1, 1, 1, 3, 4) and m2.dtype == jnp.bool_
    causal = attention.make_causal_mask(jnp.ones((1, 4)))
    _close(causal[0, 0], jnp.tril(jnp.ones((4, 4))))
    both = attention.combine_masks(causal, None, jnp.ones((1, 1, 4, 4)).at[..., 0].set(0))
    _close(both[0, 0], jnp.tril(jnp.ones((4, 4))).at[:, 0].set(0))
    assert attention.combine_masks(None, None) is None
    with pytest.raises(nn.NNShapeError, match="masks of one rank"):
        attention.combine_masks(jnp.ones((2, 2)), jnp.ones((1, 2, 2)))


def test_core_nn_imports_only_jax_numpy_and_itself():
    import ast
    import pathlib

    root = pathlib.Path(nn.__file__).parent
    allowed = {"jax", "numpy", "msgpack", "__future__", "collections", "typing", "functools"}
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.name} imports {name}"


# ----------------------------------------------------------------------------- normalization


def test_compute_stats_fast_slow_and_rms():
    from plait.core.nn import normalization

    x = jax.random.normal(KEY, (3, 4, 5)) + 2.0
    for fast in (True, False):
        mean, var = normalization.compute_stats(x, (0, 1), use_fast_variance=fast)
        _close(mean, x.mean((0, 1)), tol=1e-4)
        _close(var, x.var((0, 1)), tol=1e-4)
    zero, ms = normalization.compute_stats(x, -1, use_mean=False)
    _close(zero, jnp.zeros(x.shape[:-1]))
    _close(ms, (x**2).mean(-1), tol=1e-4)


def test_compute_stats_precision_and_mask():
    from plait.core.nn import normalization

    half = jnp.ones((2, 4), jnp.bfloat16)
    assert normalization.compute_stats(half, -1)[0].dtype == jnp.float32
    assert (
        normalization.compute_stats(half, -1, force_float32_reductions=False)[0].dtype
        == jnp.bfloat16
    )
    x = jnp.array([[1.0, 3.0, 100.0]])
    mask = jnp.array([[True, True, False]])
    mean, var = normalization.compute_stats(x, -1, mask=mask)
    _close(mean, jnp.array([2.0]))
    _close(var, jnp.array([1.0]))


def test_normalize_scale_bias_and_dtype():
    from plait.core.nn import normalization

    x = jax.random.normal(KEY, (2, 3, 4))
    mean, var = x.mean(1), x.var(1)
    scale, bias = jnp.arange(1.0, 5.0), jnp.full((4,), 0.5)
    got = normalization.normalize(x, mean, var, scale, bias, (1,), (-1,), None, 1e-6)
    want = (x - mean[:, None]) / jnp.sqrt(var[:, None] + 1e-6) * scale[None, None] + bias[
        None, None
    ]
    _close(got, want, tol=1e-4)
    low = normalization.normalize(x, mean, var, None, None, (1,), (-1,), jnp.bfloat16, 1e-6)
    assert low.dtype == jnp.bfloat16
    assert normalization.canonicalize_axes(3, (-1, 0, 2)) == (0, 2)
