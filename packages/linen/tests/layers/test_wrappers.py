import jax
import jax.numpy as jnp
import numpy as np
import pytest
from plait import linen as nn

KEY = jax.random.key(0)


def broadcasting():
    """Hand-written references broadcast like NumPy; the layers run under 'raise'."""
    return jax.numpy_rank_promotion("allow")


class SpectralDense(nn.Module):
    @nn.compact
    def __call__(self, x, train):
        return nn.SpectralNorm(nn.Dense(4), n_steps=1)(x, update_stats=train)


def test_spectral_norm_layout():
    variables = SpectralDense().init(KEY, jnp.ones((1, 3)), train=False)
    assert jax.tree.map(jnp.shape, variables) == {
        "params": {"Dense_0": {"kernel": (3, 4), "bias": (4,)}},
        "batch_stats": {"SpectralNorm_0": {"Dense_0/kernel/u": (1, 4), "Dense_0/kernel/sigma": ()}},
    }


def test_spectral_norm_converges_to_largest_singular_value():
    x = jax.random.normal(jax.random.key(1), (2, 3))
    model = SpectralDense()
    variables = model.init(KEY, x, train=False)
    kernel = variables["params"]["Dense_0"]["kernel"]
    bias = variables["params"]["Dense_0"]["bias"]
    for _ in range(30):
        _, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
        variables = {**variables, **updates}
    sigma = variables["batch_stats"]["SpectralNorm_0"]["Dense_0/kernel/sigma"]
    largest = np.linalg.svd(np.asarray(kernel), compute_uv=False)[0]
    np.testing.assert_allclose(sigma, largest, rtol=1e-4)
    out = model.apply(variables, x, train=False)
    with broadcasting():
        expected = x @ (kernel / sigma) + bias
    np.testing.assert_allclose(out, expected, rtol=1e-3, atol=1e-4)
    # The parameters themselves are never rewritten.
    assert np.array_equal(variables["params"]["Dense_0"]["kernel"], kernel)


def test_spectral_norm_eval_leaves_stats_alone():
    x = jnp.ones((1, 3))
    model = SpectralDense()
    variables = model.init(KEY, x, train=False)
    _, updates = model.apply(variables, x, train=False, mutable=["batch_stats"])
    jax.tree.map(np.testing.assert_array_equal, updates["batch_stats"], variables["batch_stats"])


def test_spectral_norm_error_on_non_matrix():
    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.SpectralNorm(nn.Conv(2, (3,)), error_on_non_matrix=True)(
                x, update_stats=False
            )

    with pytest.raises(ValueError, match=r"'Conv_0/kernel' has shape \(3, 2, 2\) \(rank > 2\)"):
        Model().init(KEY, jnp.ones((1, 4, 2)))


class WeightNormDense(nn.Module):
    variable_filter: object = None

    @nn.compact
    def __call__(self, x):
        return nn.WeightNorm(nn.Dense(4), variable_filter=self.variable_filter or {"kernel"})(x)


def test_weight_norm_layout_and_math():
    x = jax.random.normal(jax.random.key(1), (2, 3))
    model = WeightNormDense()
    variables = model.init(KEY, x)
    assert jax.tree.map(jnp.shape, variables["params"]) == {
        "Dense_0": {"kernel": (3, 4), "bias": (4,)},
        "WeightNorm_0": {"Dense_0/kernel/scale": (4,)},
    }
    scale = jax.random.uniform(jax.random.key(2), (4,)) + 0.5
    variables["params"]["WeightNorm_0"]["Dense_0/kernel/scale"] = scale
    kernel = variables["params"]["Dense_0"]["kernel"]
    bias = variables["params"]["Dense_0"]["bias"]
    with broadcasting():
        normalized = kernel / jnp.linalg.norm(kernel, axis=0, keepdims=True) * scale
        expected = x @ normalized + bias
    np.testing.assert_allclose(model.apply(variables, x), expected, rtol=1e-5, atol=1e-5)


def test_weight_norm_filter_selects_variables():
    model = WeightNormDense(variable_filter={"kernel", "bias"})
    params = model.init(KEY, jnp.ones((1, 3)))["params"]
    assert set(params["WeightNorm_0"]) == {"Dense_0/kernel/scale", "Dense_0/bias/scale"}
