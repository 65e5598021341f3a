"""Normalization layers against hand-written jnp statistics."""

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


X = jax.random.normal(jax.random.key(0), (4, 3, 6)) * 2.0 + 1.0


def _ref_norm(x, axes, eps, scale=None, bias=None):
    mean = x.mean(axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axes, keepdims=True)
    y = (x - mean) / jnp.sqrt(var + eps)
    if scale is not None:
        y = y * _b(scale, x.ndim)
    if bias is not None:
        y = y + _b(bias, x.ndim)
    return y


# ----------------------------------------------------------------------------- BatchNorm


def test_batch_norm_train_updates_running_stats_then_eval_uses_them():
    bn = nnx.BatchNorm(6, momentum=0.9, rngs=nnx.Rngs(0))
    assert isinstance(bn.mean, nnx.BatchStat) and isinstance(bn.var, nnx.BatchStat)
    assert (bn.mean[...] == 0).all() and (bn.var[...] == 1).all()
    assert isinstance(bn.scale, nnx.Param) and (bn.scale[...] == 1).all()
    y = bn(X)
    _close(y, _ref_norm(X, (0, 1), 1e-5), tol=1e-4)
    batch_mean, batch_var = X.mean((0, 1)), X.var((0, 1))
    _close(bn.mean[...], 0.1 * batch_mean)
    _close(bn.var[...], 0.9 + 0.1 * batch_var)
    bn(X)
    _close(bn.mean[...], 0.9 * 0.1 * batch_mean + 0.1 * batch_mean)

    bn.eval()
    assert bn.use_running_average is True
    before = bn.mean[...]
    y = bn(X)
    _close(y, (X - _b(bn.mean[...], 3)) / jnp.sqrt(_b(bn.var[...], 3) + 1e-5), tol=1e-4)
    _close(bn.mean[...], before)
    bn.train()
    assert bn.use_running_average is False


def test_batch_norm_call_flag_overrides_and_none_errors():
    bn = nnx.BatchNorm(6, use_running_average=None, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="use_running_average is None"):
        bn(X)
    y = bn(X, use_running_average=True)
    _close(y, X / jnp.sqrt(1 + 1e-5), tol=1e-5)


def test_batch_norm_axis_dtype_and_shape_error():
    bn = nnx.BatchNorm(3, axis=1, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    y = bn(X)
    assert y.dtype == jnp.bfloat16
    _close(y.astype(jnp.float32), _ref_norm(X, (0, 2), 1e-5), tol=5e-2)
    assert bn.mean.dtype == jnp.float32
    with pytest.raises(ValueError, match=r"BatchNorm received `x` with shape \(4, 3, 6\)"):
        nnx.BatchNorm(5, rngs=nnx.Rngs(0))(X)


# ----------------------------------------------------------------------------- LayerNorm / RMSNorm


def test_layer_norm_matches_reference():
    ln = nnx.LayerNorm(6, rngs=nnx.Rngs(0))
    ln.scale[...] = jnp.arange(1.0, 7.0)
    ln.bias[...] = jnp.full((6,), 0.5)
    _close(ln(X), _ref_norm(X, (-1,), 1e-6, ln.scale[...], ln.bias[...]), tol=1e-4)
    multi = nnx.LayerNorm(
        6, reduction_axes=(1, 2), use_bias=False, use_scale=False, rngs=nnx.Rngs(0)
    )
    assert multi.scale is None and multi.bias is None
    _close(multi(X), _ref_norm(X, (1, 2), 1e-6), tol=1e-4)
    slow = nnx.LayerNorm(6, use_fast_variance=False, rngs=nnx.Rngs(0))
    _close(slow(X), _ref_norm(X, (-1,), 1e-6), tol=1e-4)


def test_layer_norm_mask_restricts_statistics():
    ln = nnx.LayerNorm(6, use_bias=False, use_scale=False, rngs=nnx.Rngs(0))
    mask = jnp.broadcast_to(jnp.arange(6) < 4, X.shape)
    y = ln(X, mask=mask)
    part = X[..., :4]
    _close(y[..., :4], _ref_norm(part, (-1,), 1e-6), tol=1e-4)


def test_rms_norm_matches_reference():
    rms = nnx.RMSNorm(6, rngs=nnx.Rngs(0))
    assert not hasattr(rms, "bias") or rms.__dict__.get("bias") is None
    rms.scale[...] = jnp.arange(1.0, 7.0)
    want = X / jnp.sqrt((X**2).mean(-1, keepdims=True) + 1e-6) * _b(rms.scale[...], 3)
    _close(rms(X), want, tol=1e-4)


# ----------------------------------------------------------------------------- GroupNorm / InstanceNorm


def test_group_norm_matches_reference():
    gn = nnx.GroupNorm(6, num_groups=3, rngs=nnx.Rngs(0))
    gn.scale[...] = jnp.arange(1.0, 7.0)
    grouped = X.reshape(4, 3, 3, 2)
    want = _ref_norm(grouped, (1, 3), 1e-6).reshape(X.shape) * _b(gn.scale[...], 3)
    _close(gn(X), want, tol=1e-4)
    by_size = nnx.GroupNorm(6, num_groups=None, group_size=2, rngs=nnx.Rngs(0))
    assert by_size.num_groups == 3


def test_group_norm_with_one_group_equals_layer_norm_over_all_axes():
    gn = nnx.GroupNorm(6, num_groups=1, rngs=nnx.Rngs(0))
    ln = nnx.LayerNorm(6, reduction_axes=(1, 2), rngs=nnx.Rngs(0))
    _close(gn(X), ln(X), tol=1e-4)


def test_group_norm_argument_errors():
    with pytest.raises(ValueError, match="exactly one of num_groups and group_size"):
        nnx.GroupNorm(6, num_groups=2, group_size=3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="does not divide"):
        nnx.GroupNorm(6, num_groups=4, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="not a multiple of group_size"):
        nnx.GroupNorm(6, num_groups=None, group_size=4, rngs=nnx.Rngs(0))


def test_instance_norm_matches_reference():
    norm = nnx.InstanceNorm(6, rngs=nnx.Rngs(0))
    _close(norm(X), _ref_norm(X, (1,), 1e-6), tol=1e-4)
    with pytest.raises(ValueError, match="batch axis"):
        nnx.InstanceNorm(4, feature_axes=0, rngs=nnx.Rngs(0))(X)


# ----------------------------------------------------------------------------- WeightNorm / SpectralNorm


def test_weight_norm_normalizes_kernel_columns():
    base = nnx.Linear(6, 2, rngs=nnx.Rngs(0))
    layer = nnx.WeightNorm(base, rngs=nnx.Rngs(1))
    assert set(layer.scales) == {"kernel"} and layer.scales["kernel"].shape == (2,)
    layer.scales["kernel"][...] = jnp.array([2.0, 3.0])
    kernel = base.kernel[...]
    normalized = kernel / jnp.sqrt((kernel**2).sum(0, keepdims=True) + 1e-12)
    want = X @ (normalized * jnp.array([[2.0, 3.0]])) + _b(base.bias[...], 3)
    _close(layer(X), want, tol=1e-4)
    _close(base.kernel[...], kernel)  # the wrapped parameter is left untouched


def test_weight_norm_gradient_reaches_kernel_and_scale():
    layer = nnx.WeightNorm(nnx.Linear(6, 2, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(1))

    def loss(model):
        return (model(X) ** 2).sum()

    grads = nnx.grad(loss)(layer)
    flat = {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_leaves_with_path(grads)}
    assert any("scales" in k for k in flat)
    assert any("kernel" in k and "scales" not in k for k in flat)
    assert all(float(jnp.abs(v).sum()) > 0 for k, v in flat.items() if "bias" not in k)


def test_spectral_norm_divides_by_power_iteration_sigma():
    base = nnx.Linear(6, 4, use_bias=False, rngs=nnx.Rngs(0))
    layer = nnx.SpectralNorm(base, n_steps=30, rngs=nnx.Rngs(1))
    assert layer.batch_stats["kernel"]["u"].shape == (1, 4)
    kernel = base.kernel[...]
    sigma = jnp.linalg.svd(kernel, compute_uv=False)[0]
    _close(layer(X), X @ (kernel / sigma), tol=1e-3)
    _close(layer.batch_stats["kernel"]["sigma"][...], sigma, tol=1e-3)
    frozen = layer.batch_stats["kernel"]["u"][...]
    layer(X, update_stats=False)
    _close(layer.batch_stats["kernel"]["u"][...], frozen)


def test_spectral_norm_non_matrix_error():
    conv = nnx.Conv(3, 2, 3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="not a matrix"):
        nnx.SpectralNorm(conv, error_on_non_matrix=True, rngs=nnx.Rngs(1))
    layer = nnx.SpectralNorm(conv, rngs=nnx.Rngs(1))
    assert layer(jnp.ones((1, 5, 3))).shape == (1, 5, 2)
