import jax
import jax.numpy as jnp
import numpy as np
import pytest
from plait import linen as nn

KEY = jax.random.key(0)


def test_dropout_matches_bernoulli_mask_from_the_dropout_stream():
    x = jnp.arange(1.0, 13.0).reshape(3, 4)
    rng = jax.random.key(7)
    out = nn.Dropout(rate=0.25).apply({}, x, deterministic=False, rng=rng)
    keep = jax.random.bernoulli(rng, 0.75, (3, 4))
    np.testing.assert_allclose(out, jnp.where(keep, x / 0.75, 0.0), rtol=1e-6)


def test_dropout_uses_make_rng_dropout_and_differs_per_key():
    layer = nn.Dropout(rate=0.5, deterministic=False)
    x = jnp.ones((64,))
    a = layer.apply({}, x, rngs={"dropout": jax.random.key(1)})
    b = layer.apply({}, x, rngs={"dropout": jax.random.key(2)})
    assert set(np.unique(np.asarray(a)).tolist()) <= {0.0, 2.0}
    assert not np.array_equal(a, b)


def test_dropout_deterministic_and_edge_rates():
    x = jnp.ones((2, 3))
    np.testing.assert_array_equal(nn.Dropout(0.5).apply({}, x, deterministic=True), x)
    np.testing.assert_array_equal(nn.Dropout(0.0, deterministic=False).apply({}, x), x)
    np.testing.assert_array_equal(
        nn.Dropout(1.0, deterministic=False).apply({}, x, rngs={"dropout": KEY}), jnp.zeros_like(x)
    )


def test_dropout_broadcast_dims_share_the_mask():
    x = jnp.ones((4, 16))
    out = nn.Dropout(0.5, broadcast_dims=(0,), deterministic=False).apply(
        {}, x, rngs={"dropout": KEY}
    )
    np.testing.assert_array_equal(out, jnp.broadcast_to(out[0], x.shape))


def test_dropout_needs_deterministic_from_attribute_or_call():
    with pytest.raises(Exception, match="deterministic"):
        nn.Dropout(0.5).apply({}, jnp.ones(3), rngs={"dropout": KEY})


def test_prelu_learns_a_scalar_slope():
    layer = nn.PReLU(negative_slope_init=0.2)
    x = jnp.array([-3.0, 0.0, 2.0])
    variables = layer.init(KEY, x)
    assert variables["params"]["negative_slope"].shape == ()
    np.testing.assert_allclose(layer.apply(variables, x), [-0.6, 0.0, 2.0], rtol=1e-6)
    bf16 = layer.apply(variables, x.astype(jnp.bfloat16))
    assert bf16.dtype == jnp.bfloat16


def test_activations_are_jax_functions():
    assert nn.relu is jax.nn.relu
    assert nn.gelu is jax.nn.gelu
    assert nn.swish is jax.nn.silu
    x = jnp.array([-1.0, 0.5])
    np.testing.assert_allclose(nn.normalize(x), jax.nn.standardize(x))
    np.testing.assert_allclose(nn.activation.tanh(x), jnp.tanh(x))


def test_initializers_and_pooling_are_reachable():
    assert nn.initializers.zeros_init()(KEY, (2,), jnp.float32).tolist() == [0.0, 0.0]
    assert nn.ones_init()(KEY, (1,), jnp.float32).tolist() == [1.0]
    np.testing.assert_array_equal(
        nn.initializers.orthogonal()(KEY, (3, 3)), jax.nn.initializers.orthogonal()(KEY, (3, 3))
    )
    x = jnp.arange(8.0).reshape(1, 4, 2)
    assert nn.max_pool(x, (2,), strides=(2,)).tolist() == [[[2.0, 3.0], [6.0, 7.0]]]
    assert nn.avg_pool(x, (2,), strides=(2,)).tolist() == [[[1.0, 2.0], [5.0, 6.0]]]
    assert nn.pooling.min_pool(x, (2,), strides=(2,)).tolist() == [[[0.0, 1.0], [4.0, 5.0]]]


def test_batch_apply_merges_and_restores_leading_axes():
    seen = []

    def f(x, scale):
        seen.append((x.shape, jnp.shape(scale)))
        return {"y": x * scale}

    x = jnp.arange(24.0).reshape(2, 3, 4)
    out = nn.BatchApply(f)(x, scale=2.0)
    assert seen == [((6, 4), ())]
    np.testing.assert_array_equal(out["y"], 2.0 * x)
    dense = nn.Dense(5)
    variables = dense.init(KEY, jnp.ones((6, 4)))
    y = nn.BatchApply(lambda v: dense.apply(variables, v))(x)
    assert y.shape == (2, 3, 5)
    with pytest.raises(ValueError, match=r"at least one argument with 3 or more axes"):
        nn.BatchApply(f, num_dims=3)(jnp.ones((2, 2)), scale=1.0)
