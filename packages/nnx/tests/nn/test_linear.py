"""Linear, LinearGeneral, Einsum, Conv, ConvTranspose, Embed against pure-jnp references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from plait import nnx


def _b(v, ndim):
    """``v`` with leading singleton axes up to ``ndim`` (explicit rank promotion)."""
    return v.reshape((1,) * (ndim - v.ndim) + v.shape)


def _close(a, b, tol=1e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


def _param_keys(seed, n):
    rngs = nnx.Rngs(seed)
    return [rngs.params() for _ in range(n)]


X = jax.random.normal(jax.random.key(42), (2, 5, 3))


# ----------------------------------------------------------------------------- Linear


def test_linear_params_defaults_and_math():
    layer = nnx.Linear(3, 4, rngs=nnx.Rngs(0))
    k_kernel, _ = _param_keys(0, 2)
    assert isinstance(layer.kernel, nnx.Param) and isinstance(layer.bias, nnx.Param)
    assert layer.kernel.shape == (3, 4) and layer.bias.shape == (4,)
    _close(layer.kernel[...], nnx.initializers.lecun_normal()(k_kernel, (3, 4)))
    assert (layer.bias[...] == 0).all()
    layer.bias[...] = jnp.arange(4.0)
    _close(layer(X), X @ layer.kernel[...] + _b(layer.bias[...], 3))


def test_linear_without_bias_and_custom_init_metadata():
    layer = nnx.Linear(
        3,
        2,
        use_bias=False,
        kernel_init=nnx.initializers.ones,
        kernel_metadata={"sharding_names": ("in", "out")},
        rngs=nnx.Rngs(0),
    )
    assert layer.bias is None
    assert layer.kernel.sharding_names == ("in", "out")
    _close(layer(X), jnp.repeat(X.sum(-1, keepdims=True), 2, axis=-1))


def test_linear_dtype_and_param_dtype():
    layer = nnx.Linear(3, 4, param_dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    assert layer.kernel.dtype == jnp.bfloat16
    assert layer(X).dtype == jnp.float32  # promoted with the float32 input
    assert layer(X.astype(jnp.bfloat16)).dtype == jnp.bfloat16
    layer = nnx.Linear(3, 4, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    assert layer.kernel.dtype == jnp.float32 and layer(X).dtype == jnp.bfloat16


def test_linear_wrong_input_names_module_shapes_and_fix():
    layer = nnx.Linear(3, 4, rngs=nnx.Rngs(0))
    with pytest.raises(
        ValueError,
        match=r"Linear received `inputs` with shape \(2, 5\), but expected \(\.\.\., 3\)[\s\S]*in_features",
    ):
        layer(jnp.ones((2, 5)))


def test_linear_error_names_path_inside_a_model():
    class Model(nnx.Module):
        def __init__(self, rngs):
            self.encoder = nnx.Linear(3, 4, rngs=rngs)

        def __call__(self, x):
            return self.encoder(x)

    with pytest.raises(ValueError, match=r"Model\.encoder \(Linear\) received `inputs`"):
        Model(nnx.Rngs(0))(jnp.ones((1, 5)))


# ----------------------------------------------------------------------------- LinearGeneral


def test_linear_general_multi_axis_matches_einsum():
    layer = nnx.LinearGeneral((2, 3), (4, 5), axis=(1, -1), rngs=nnx.Rngs(0))
    assert layer.kernel.shape == (2, 3, 4, 5) and layer.bias.shape == (4, 5)
    layer.bias[...] = jax.random.normal(jax.random.key(1), (4, 5))
    x = jax.random.normal(jax.random.key(2), (6, 2, 3))
    _close(layer(x), jnp.einsum("nab,abcd->ncd", x, layer.kernel[...]) + _b(layer.bias[...], 3))


def test_linear_general_kernel_init_sees_flattened_matrix():
    layer = nnx.LinearGeneral((2, 3), (4, 5), axis=(1, 2), rngs=nnx.Rngs(0))
    (k_kernel, _) = _param_keys(0, 2)
    want = nnx.initializers.lecun_normal()(k_kernel, (6, 20)).reshape(2, 3, 4, 5)
    _close(layer.kernel[...], want)


def test_linear_general_batch_axis():
    layer = nnx.LinearGeneral(3, 4, batch_axis={0: 2}, rngs=nnx.Rngs(0))
    assert layer.kernel.shape == (2, 3, 4) and layer.bias.shape == (2, 4)
    layer.bias[...] = jnp.arange(8.0).reshape(2, 4)
    want = jnp.einsum("btf,bfo->bto", X, layer.kernel[...]) + layer.bias[...][:, None, :]
    _close(layer(X), want)


def test_linear_general_errors():
    with pytest.raises(ValueError, match="same length"):
        nnx.LinearGeneral((2, 3), 4, axis=-1, rngs=nnx.Rngs(0))
    layer = nnx.LinearGeneral((2, 3), 4, axis=(-2, -1), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"expected \(\.\.\., 2, 3\)"):
        layer(jnp.ones((4, 3, 3)))


# ----------------------------------------------------------------------------- Einsum


def test_einsum_matches_jnp_einsum_with_broadcast_bias():
    layer = nnx.Einsum("nta,hab->nthb", (8, 3, 4), (8, 4), rngs=nnx.Rngs(0))
    layer.bias[...] = jax.random.normal(jax.random.key(3), (8, 4))
    want = jnp.einsum("nta,hab->nthb", X, layer.kernel[...]) + _b(layer.bias[...], 4)
    _close(layer(X), want)


def test_einsum_ellipsis_and_call_time_equation():
    layer = nnx.Einsum("...a,ab->...b", (3, 2), (2,), rngs=nnx.Rngs(0))
    layer.bias[...] = jnp.array([1.0, -1.0])
    _close(layer(X), X @ layer.kernel[...] + _b(layer.bias[...], 3))
    _close(layer(X[0], "ta,ab->tb"), X[0] @ layer.kernel[...] + _b(layer.bias[...], 2))


def test_einsum_rejects_bad_equations():
    with pytest.raises(ValueError, match="must be explicit"):
        nnx.Einsum("ab,bc", (2, 2), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="exactly two operands"):
        nnx.Einsum("a,b,c->a", (2,), rngs=nnx.Rngs(0))


# ----------------------------------------------------------------------------- Conv


def _conv_ref(x, kernel, strides, padding, groups=1, lhs_dil=None, rhs_dil=None):
    return lax.conv_general_dilated(
        x,
        kernel,
        strides,
        padding,
        lhs_dilation=lhs_dil,
        rhs_dilation=rhs_dil,
        dimension_numbers=("NWC", "WIO", "NWC"),
        feature_group_count=groups,
    )


def test_conv_1d_matches_lax():
    conv = nnx.Conv(
        3, 4, kernel_size=3, strides=2, padding="VALID", kernel_dilation=1, rngs=nnx.Rngs(0)
    )
    assert conv.kernel.shape == (3, 3, 4) and conv.bias.shape == (4,)
    conv.bias[...] = jnp.arange(4.0)
    want = _conv_ref(X, conv.kernel[...], (2,), "VALID") + _b(conv.bias[...], 3)
    _close(conv(X), want)


def test_conv_2d_same_dilation_groups():
    x = jax.random.normal(jax.random.key(4), (2, 6, 6, 4))
    conv = nnx.Conv(
        4,
        6,
        (3, 3),
        padding="SAME",
        kernel_dilation=(2, 1),
        feature_group_count=2,
        use_bias=False,
        rngs=nnx.Rngs(0),
    )
    assert conv.kernel.shape == (3, 3, 2, 6)
    want = lax.conv_general_dilated(
        x,
        conv.kernel[...],
        (1, 1),
        "SAME",
        rhs_dilation=(2, 1),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=2,
    )
    _close(conv(x), want)


def test_conv_circular_causal_and_explicit_padding():
    conv = nnx.Conv(3, 2, 3, padding="CIRCULAR", use_bias=False, rngs=nnx.Rngs(0))
    wrapped = jnp.concatenate([X[:, -1:], X, X[:, :1]], axis=1)
    _close(conv(X), _conv_ref(wrapped, conv.kernel[...], (1,), "VALID"))
    conv = nnx.Conv(3, 2, 3, padding="CAUSAL", use_bias=False, rngs=nnx.Rngs(0))
    _close(conv(X), _conv_ref(X, conv.kernel[...], (1,), [(2, 0)]))
    conv = nnx.Conv(3, 2, 3, padding=1, use_bias=False, rngs=nnx.Rngs(0))
    _close(conv(X), _conv_ref(X, conv.kernel[...], (1,), [(1, 1)]))
    with pytest.raises(ValueError, match="invalid convolution padding"):
        nnx.Conv(3, 2, 3, padding=[(1, 2, 3)], rngs=nnx.Rngs(0))(X)


def test_conv_batch_axes_flattened_and_restored():
    conv = nnx.Conv(3, 2, 3, rngs=nnx.Rngs(0))
    x = jnp.stack([X, 2 * X])  # (2, 2, 5, 3)
    out = conv(x)
    assert out.shape == (2, 2, 5, 2)
    _close(out[1], conv(2 * X))
    _close(conv(X[0]), conv(X)[0])  # no batch axis


def test_conv_mask_multiplies_kernel():
    mask = jnp.zeros((3, 3, 2)).at[1].set(1.0)
    conv = nnx.Conv(3, 2, 3, mask=mask, use_bias=False, rngs=nnx.Rngs(0))
    _close(conv(X), _conv_ref(X, conv.kernel[...] * mask, (1,), "SAME"))
    bad = nnx.Conv(3, 2, 3, mask=jnp.ones((3, 3)), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="mask shape"):
        bad(X)


def test_conv_shape_errors():
    conv = nnx.Conv(3, 2, (3, 3), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="at least 3 axes"):
        conv(jnp.ones((5, 3)))
    with pytest.raises(ValueError, match=r"expected \(\.\.\., \.\.\., \.\.\., 3\)"):
        conv(jnp.ones((1, 5, 5, 4)))


# ----------------------------------------------------------------------------- ConvTranspose


def test_conv_transpose_matches_lax():
    layer = nnx.ConvTranspose(3, 4, 3, strides=2, padding="VALID", rngs=nnx.Rngs(0))
    assert layer.kernel.shape == (3, 3, 4)
    layer.bias[...] = jnp.arange(4.0)
    want = lax.conv_transpose(X, layer.kernel[...], (2,), "VALID") + _b(layer.bias[...], 3)
    _close(layer(X), want)
    tk = nnx.ConvTranspose(3, 4, 3, transpose_kernel=True, use_bias=False, rngs=nnx.Rngs(0))
    assert tk.kernel.shape == (3, 4, 3)
    _close(tk(X), lax.conv_transpose(X, tk.kernel[...], (1,), "SAME", transpose_kernel=True))


def test_conv_transpose_circular_output_is_periodic_sum():
    layer = nnx.ConvTranspose(
        1,
        1,
        3,
        strides=1,
        padding="CIRCULAR",
        use_bias=False,
        kernel_init=nnx.initializers.ones,
        rngs=nnx.Rngs(0),
    )
    x = jnp.array([[[1.0], [0.0], [0.0], [0.0]]])
    # A delta convolved with a width-3 box, wrapped around a period of 4.
    _close(layer(x)[0, :, 0], jnp.array([1.0, 1.0, 0.0, 1.0]))


# ----------------------------------------------------------------------------- Embed


def test_embed_lookup_default_init_and_attend():
    embed = nnx.Embed(5, 3, rngs=nnx.Rngs(0))
    (key,) = _param_keys(0, 1)
    want = nnx.initializers.variance_scaling(1.0, "fan_in", "normal", out_axis=0)(key, (5, 3))
    _close(embed.embedding[...], want)
    ids = jnp.array([[0, 4], [2, -1]])
    _close(embed(ids), embed.embedding[...][ids])
    q = jax.random.normal(jax.random.key(5), (2, 3))
    _close(embed.attend(q), q @ embed.embedding[...].T)


def test_embed_rejects_float_ids_and_fills_out_of_range():
    embed = nnx.Embed(4, 2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="ids must be integers"):
        embed(jnp.array([0.0]))
    assert jnp.isnan(embed(jnp.array([7]))).all()
    with pytest.raises(ValueError, match="features"):
        embed.attend(jnp.ones((1, 3)))


def test_embed_dtype():
    embed = nnx.Embed(4, 2, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    assert embed.embedding.dtype == jnp.float32
    assert embed(jnp.array([1])).dtype == jnp.bfloat16
    single = nnx.Embed(1, 2, rngs=nnx.Rngs(0))
    assert single(jnp.zeros((3, 2), jnp.int32)).shape == (3, 2, 2)
