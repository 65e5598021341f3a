import jax
import jax.numpy as jnp
import numpy as np
import pytest
from plait import linen as nn

KEY = jax.random.key(0)


def broadcasting():
    """Hand-written references broadcast like NumPy; the layers run under 'raise'."""
    return jax.numpy_rank_promotion("allow")


def rand(shape, seed=1, dtype=jnp.float32):
    return (jax.random.normal(jax.random.key(seed), shape) * 2.0 + 0.5).astype(dtype)


def random_affine(variables, seed=3):
    """Replaces scale/bias with random values so the reference must apply them."""
    params = variables["params"]
    keys = iter(jax.random.split(jax.random.key(seed), 8))
    new = {k: jax.random.normal(next(keys), v.shape) for k, v in params.items()}
    return {**variables, "params": new}


def test_layer_norm_matches_reference():
    x = rand((2, 3, 5))
    layer = nn.LayerNorm()
    variables = random_affine(layer.init(KEY, x))
    p = variables["params"]
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    with broadcasting():
        with broadcasting():
            expected = (x - mean) / jnp.sqrt(var + 1e-6) * p["scale"] + p["bias"]
    np.testing.assert_allclose(layer.apply(variables, x), expected, rtol=1e-5, atol=1e-5)


def test_layer_norm_reduction_and_feature_axes():
    x = rand((2, 3, 5))
    layer = nn.LayerNorm(reduction_axes=(1, 2), feature_axes=(1, 2), use_fast_variance=False)
    variables = random_affine(layer.init(KEY, x))
    p = variables["params"]
    assert p["scale"].shape == (3, 5)
    mean = x.mean((1, 2), keepdims=True)
    var = x.var((1, 2), keepdims=True)
    with broadcasting():
        expected = (x - mean) / jnp.sqrt(var + 1e-6) * p["scale"] + p["bias"]
    np.testing.assert_allclose(layer.apply(variables, x), expected, rtol=1e-5, atol=1e-5)


def test_layer_norm_mask_restricts_statistics():
    x = rand((2, 6))
    mask = jnp.array([[True] * 4 + [False] * 2] * 2)
    layer = nn.LayerNorm(use_scale=False, use_bias=False)
    out = layer.apply({}, x, mask=mask)
    kept = x[:, :4]
    expected = (x - kept.mean(-1, keepdims=True)) / jnp.sqrt(kept.var(-1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_layer_norm_half_precision_keeps_float32_statistics():
    x = rand((4, 8), dtype=jnp.bfloat16)
    layer = nn.LayerNorm(dtype=jnp.bfloat16)
    variables = layer.init(KEY, x)
    assert variables["params"]["scale"].dtype == jnp.float32
    out = layer.apply(variables, x)
    assert out.dtype == jnp.bfloat16
    x32 = x.astype(jnp.float32)
    expected = (x32 - x32.mean(-1, keepdims=True)) / jnp.sqrt(x32.var(-1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(out.astype(jnp.float32), expected, rtol=2e-2, atol=2e-2)


def test_layer_norm_wrong_feature_size():
    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.LayerNorm()(x)

    variables = Model().init(KEY, jnp.ones((2, 4)))
    with pytest.raises(ValueError, match=r"LayerNorm at path '/LayerNorm_0'.*sizes \(5,\).*\(4,\)"):
        Model().apply(variables, jnp.ones((2, 5)))


def test_rms_norm_matches_reference():
    x = rand((3, 6))
    layer = nn.RMSNorm()
    variables = random_affine(layer.init(KEY, x))
    assert set(variables["params"]) == {"scale"}
    with broadcasting():
        expected = (
            x / jnp.sqrt((x**2).mean(-1, keepdims=True) + 1e-6) * variables["params"]["scale"]
        )
    np.testing.assert_allclose(layer.apply(variables, x), expected, rtol=1e-5, atol=1e-5)


def test_batch_norm_train_updates_running_stats_and_eval_uses_them():
    x = rand((8, 3))
    layer = nn.BatchNorm(momentum=0.9)
    variables = layer.init(KEY, x, use_running_average=False)
    stats = variables["batch_stats"]
    np.testing.assert_array_equal(stats["mean"], np.zeros(3))
    np.testing.assert_array_equal(stats["var"], np.ones(3))
    variables = random_affine(variables)
    p = variables["params"]

    y, updates = layer.apply(variables, x, use_running_average=False, mutable=["batch_stats"])
    mean, var = x.mean(0), x.var(0)
    with broadcasting():
        np.testing.assert_allclose(
            y, (x - mean) / jnp.sqrt(var + 1e-5) * p["scale"] + p["bias"], rtol=1e-5, atol=1e-5
        )
    np.testing.assert_allclose(updates["batch_stats"]["mean"], 0.1 * mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(updates["batch_stats"]["var"], 0.9 + 0.1 * var, rtol=1e-5)

    trained = {**variables, **updates}
    y_eval = layer.apply(trained, x, use_running_average=True)
    ra_mean, ra_var = updates["batch_stats"]["mean"], updates["batch_stats"]["var"]
    with broadcasting():
        np.testing.assert_allclose(
            y_eval,
            (x - ra_mean) / jnp.sqrt(ra_var + 1e-5) * p["scale"] + p["bias"],
            rtol=1e-5,
            atol=1e-5,
        )


def test_batch_norm_feature_axis_and_param_shapes():
    x = rand((4, 3, 5))
    layer = nn.BatchNorm(use_running_average=False, axis=1)
    variables = layer.init(KEY, x)
    assert jax.tree.map(jnp.shape, variables) == {
        "params": {"scale": (3,), "bias": (3,)},
        "batch_stats": {"mean": (3,), "var": (3,)},
    }
    y, _ = layer.apply(variables, x, mutable=["batch_stats"])
    mean = x.mean((0, 2), keepdims=True)
    var = x.var((0, 2), keepdims=True)
    np.testing.assert_allclose(y, (x - mean) / jnp.sqrt(var + 1e-5), rtol=1e-4, atol=1e-5)


def test_batch_norm_requires_use_running_average_somewhere():
    with pytest.raises(Exception, match="use_running_average"):
        nn.BatchNorm().init(KEY, jnp.ones((2, 3)))


def test_batch_norm_axis_name_averages_across_devices():
    # vmap over an axis named 'batch' stands in for several devices.
    x = rand((4, 2, 3))  # 4 "devices", 2 examples each
    layer = nn.BatchNorm(
        use_running_average=False, axis_name="batch", use_bias=False, use_scale=False
    )
    variables = layer.init(KEY, x[0])

    def step(xs):
        return layer.apply(variables, xs, mutable=["batch_stats"])

    y, updates = jax.vmap(step, axis_name="batch")(x)
    flat = x.reshape(8, 3)
    with broadcasting():
        expected = (x - flat.mean(0)) / jnp.sqrt(flat.var(0) + 1e-5)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        updates["batch_stats"]["mean"][0], 0.01 * flat.mean(0), rtol=1e-4, atol=1e-6
    )


def test_batch_norm_half_precision_inputs():
    x = rand((8, 3), dtype=jnp.bfloat16)
    layer = nn.BatchNorm(use_running_average=False)
    variables = layer.init(KEY, x)
    assert variables["batch_stats"]["mean"].dtype == jnp.float32
    y, updates = layer.apply(variables, x, mutable=["batch_stats"])
    assert y.dtype == jnp.float32  # params are float32 and no dtype was forced
    assert updates["batch_stats"]["var"].dtype == jnp.float32
    y16 = nn.BatchNorm(use_running_average=False, dtype=jnp.bfloat16).apply(
        variables, x, mutable=["batch_stats"]
    )[0]
    assert y16.dtype == jnp.bfloat16


def test_batch_norm_wrong_feature_size():
    layer = nn.BatchNorm(use_running_average=True)
    variables = layer.init(KEY, jnp.ones((2, 3)))
    with pytest.raises(
        ValueError, match=r"BatchNorm.*features \(4,\).*batch_stats/mean has shape \(3,\)"
    ):
        layer.apply(variables, jnp.ones((2, 4)))


def test_group_norm_matches_reference():
    x = rand((2, 3, 4, 6))
    layer = nn.GroupNorm(num_groups=3)
    variables = random_affine(layer.init(KEY, x))
    p = variables["params"]
    groups = x.reshape(2, 3, 4, 3, 2)
    mean = groups.mean((1, 2, 4), keepdims=True)
    var = groups.var((1, 2, 4), keepdims=True)
    with broadcasting():
        normalized = ((groups - mean) / jnp.sqrt(var + 1e-6)).reshape(x.shape)
    with broadcasting():
        np.testing.assert_allclose(
            layer.apply(variables, x), normalized * p["scale"] + p["bias"], rtol=1e-4, atol=1e-5
        )


def test_group_norm_group_size_equals_num_groups_form():
    x = rand((2, 5, 6))
    by_count = nn.GroupNorm(num_groups=2)
    by_size = nn.GroupNorm(num_groups=None, group_size=3)
    variables = by_count.init(KEY, x)
    np.testing.assert_allclose(by_count.apply(variables, x), by_size.apply(variables, x), rtol=1e-6)


def test_group_norm_errors():
    with pytest.raises(ValueError, match="set exactly one of num_groups and group_size"):
        nn.GroupNorm(group_size=2).init(KEY, jnp.ones((2, 4)))
    with pytest.raises(ValueError, match=r"num_groups=3 does not divide the 4 channels"):
        nn.GroupNorm(num_groups=3).init(KEY, jnp.ones((2, 4)))
    with pytest.raises(ValueError, match="must include the last axis"):
        nn.GroupNorm(num_groups=2, reduction_axes=(1,)).init(KEY, jnp.ones((2, 3, 4)))


def test_instance_norm_equals_layer_norm_over_spatial_axes():
    x = rand((2, 3, 4, 5))
    layer = nn.InstanceNorm()
    variables = random_affine(layer.init(KEY, x))
    expected = nn.LayerNorm(reduction_axes=(1, 2), feature_axes=-1).apply(variables, x)
    np.testing.assert_allclose(layer.apply(variables, x), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="include axis 0"):
        nn.InstanceNorm(feature_axes=0).init(KEY, x)
