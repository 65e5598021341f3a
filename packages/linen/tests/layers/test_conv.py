import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from plait import linen as nn

KEY = jax.random.key(0)


def broadcasting():
    """Hand-written references broadcast like NumPy; the layers run under 'raise'."""
    return jax.numpy_rank_promotion("allow")


def rand(shape, seed=1):
    return jax.random.normal(jax.random.key(seed), shape)


def reference_conv(x, kernel, strides, padding, input_dilation=1, kernel_dilation=1, groups=1):
    """NWC / NHWC convolution written directly against lax.conv_general_dilated."""
    n = kernel.ndim - 2
    spec = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC")}[n]
    as_tuple = lambda v: (v,) * n if isinstance(v, int) else tuple(v)
    return lax.conv_general_dilated(
        x,
        kernel,
        window_strides=as_tuple(strides),
        padding=padding,
        lhs_dilation=as_tuple(input_dilation),
        rhs_dilation=as_tuple(kernel_dilation),
        dimension_numbers=spec,
        feature_group_count=groups,
    )


@pytest.mark.parametrize(
    ("kernel_size", "strides", "padding", "kernel_dilation", "lax_padding"),
    [
        ((3,), 2, "VALID", 1, "VALID"),
        ((2, 3), (1, 2), "SAME", (2, 1), "SAME"),
        ((3, 3), 1, [(0, 1), 2], 1, [(0, 1), (2, 2)]),
    ],
)
def test_conv_matches_lax(kernel_size, strides, padding, kernel_dilation, lax_padding):
    x = rand((2,) + (6,) * len(kernel_size) + (3,))
    layer = nn.Conv(
        4,
        kernel_size,
        strides=strides,
        padding=padding,
        kernel_dilation=kernel_dilation,
        bias_init=nn.initializers.normal(1.0),
    )
    variables = layer.init(KEY, x)
    p = variables["params"]
    assert p["kernel"].shape == tuple(kernel_size) + (3, 4)
    with broadcasting():
        expected = (
            reference_conv(x, p["kernel"], strides, lax_padding, 1, kernel_dilation) + p["bias"]
        )
    np.testing.assert_allclose(layer.apply(variables, x), expected, rtol=1e-5, atol=1e-5)


def test_conv_feature_groups_and_input_dilation():
    x = rand((1, 5, 4))
    layer = nn.Conv(6, 3, feature_group_count=2, input_dilation=2, padding=1, use_bias=False)
    variables = layer.init(KEY, x)
    kernel = variables["params"]["kernel"]
    assert kernel.shape == (3, 2, 6)
    expected = reference_conv(x, kernel, 1, [(1, 1)], input_dilation=2, groups=2)
    np.testing.assert_allclose(layer.apply(variables, x), expected, rtol=1e-5, atol=1e-5)


def test_conv_circular_padding_wraps_the_input():
    x = rand((1, 5, 2))
    layer = nn.Conv(3, (3,), padding="CIRCULAR", use_bias=False)
    variables = layer.init(KEY, x)
    kernel = variables["params"]["kernel"]
    wrapped = jnp.concatenate([x[:, -1:], x, x[:, :1]], axis=1)
    expected = reference_conv(wrapped, kernel, 1, "VALID")
    np.testing.assert_allclose(layer.apply(variables, x), expected, rtol=1e-5, atol=1e-5)


def test_conv_causal_padding_only_sees_the_past():
    x = rand((1, 6, 2))
    layer = nn.Conv(3, (3,), padding="CAUSAL", kernel_dilation=2, use_bias=False)
    variables = layer.init(KEY, x)
    kernel = variables["params"]["kernel"]
    expected = reference_conv(
        jnp.pad(x, [(0, 0), (4, 0), (0, 0)]), kernel, 1, "VALID", kernel_dilation=2
    )
    out = layer.apply(variables, x)
    assert out.shape == (1, 6, 3)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="only defined for 1-D convolutions"):
        nn.Conv(3, (3, 3), padding="CAUSAL").init(KEY, jnp.ones((1, 4, 4, 2)))


def test_conv_several_batch_axes_and_no_batch_axis():
    layer = nn.Conv(2, (3,))
    x = rand((2, 3, 5, 4))
    variables = layer.init(KEY, x)
    out = layer.apply(variables, x)
    assert out.shape == (2, 3, 5, 2)
    np.testing.assert_allclose(out[1, 2], layer.apply(variables, x[1, 2]), rtol=1e-5, atol=1e-5)


def test_conv_mask_zeroes_kernel_entries():
    mask = jnp.zeros((3, 2, 4)).at[1].set(1.0)
    x = rand((1, 5, 2))
    layer = nn.Conv(4, (3,), mask=mask, use_bias=False, padding="VALID")
    variables = layer.init(KEY, x)
    kernel = variables["params"]["kernel"]
    expected = reference_conv(x, kernel * mask, 1, "VALID")
    np.testing.assert_allclose(layer.apply(variables, x), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(
        ValueError, match=r"mask has shape \(2, 2, 4\) but the kernel has shape \(3, 2, 4\)"
    ):
        nn.Conv(4, (3,), mask=jnp.ones((2, 2, 4))).init(KEY, x)


def test_conv_wrong_channels_names_path_and_fix():
    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Conv(4, (3,))(x)

    variables = Model().init(KEY, jnp.ones((1, 5, 2)))
    with pytest.raises(
        ValueError, match=r"Conv at path '/Conv_0'.*\(1, 5, 3\).*\(3, 3, 4\).*\(3, 2, 4\)"
    ):
        Model().apply(variables, jnp.ones((1, 5, 3)))


def test_conv_rank_too_small():
    with pytest.raises(
        ValueError, match=r"has rank 2, but a 2-D convolution needs at least 3 axes"
    ):
        nn.Conv(2, (3, 3)).init(KEY, jnp.ones((4, 4)))


def test_conv_dtype():
    layer = nn.Conv(2, (3,), dtype=jnp.bfloat16)
    x = jnp.ones((1, 4, 2))
    variables = layer.init(KEY, x)
    assert variables["params"]["kernel"].dtype == jnp.float32
    assert layer.apply(variables, x).dtype == jnp.bfloat16


def test_conv_local_matches_lax_local():
    x = rand((2, 6, 3))
    layer = nn.ConvLocal(4, (3,), padding="VALID", bias_init=nn.initializers.normal(1.0))
    variables = layer.init(KEY, x)
    p = variables["params"]
    assert jax.tree.map(jnp.shape, p) == {"kernel": (4, 9, 4), "bias": (4, 4)}
    with broadcasting():
        expected = (
            lax.conv_general_dilated_local(
                x, p["kernel"], (1,), "VALID", (3,), dimension_numbers=("NWC", "WIO", "NWC")
            )
            + p["bias"]
        )
    np.testing.assert_allclose(layer.apply(variables, x), expected, rtol=1e-5, atol=1e-5)


def test_conv_local_equals_conv_when_all_positions_share_weights():
    x = rand((1, 6, 2))
    conv = nn.Conv(3, (3,), padding="VALID", use_bias=False)
    kernel = conv.init(KEY, x)["params"]["kernel"]
    # The local kernel flattens (in, window) per output position: tile the shared one.
    per_position = jnp.transpose(kernel, (1, 0, 2)).reshape(1, 6, 3)
    local_kernel = jnp.tile(per_position, (4, 1, 1))
    local = nn.ConvLocal(3, (3,), padding="VALID", use_bias=False)
    np.testing.assert_allclose(
        local.apply({"params": {"kernel": local_kernel}}, x),
        conv.apply({"params": {"kernel": kernel}}, x),
        rtol=1e-5,
        atol=1e-5,
    )


@pytest.mark.parametrize(("strides", "padding"), [((1,), "SAME"), ((2,), "VALID"), ((2,), "SAME")])
def test_conv_transpose_matches_lax(strides, padding):
    x = rand((2, 5, 3))
    layer = nn.ConvTranspose(
        4, (3,), strides=strides, padding=padding, bias_init=nn.initializers.normal(1.0)
    )
    variables = layer.init(KEY, x)
    p = variables["params"]
    assert p["kernel"].shape == (3, 3, 4)
    with broadcasting():
        expected = (
            lax.conv_transpose(
                x, p["kernel"], strides, padding, dimension_numbers=("NWC", "WIO", "NWC")
            )
            + p["bias"]
        )
    np.testing.assert_allclose(layer.apply(variables, x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("kernel_size", "stride", "shift"), [(3, 1, 0), (4, 2, 0), (4, 1, 1)])
def test_circular_conv_transpose_is_the_adjoint_of_circular_conv(kernel_size, stride, shift):
    # With transpose_kernel=True and the same kernel, ConvTranspose('CIRCULAR') is the
    # transpose (vjp) of Conv('CIRCULAR'). Flax's alignment rule puts an even kernel
    # at stride 1 one position later; plait keeps that convention (`shift`).
    x = rand((1, 8, 2))
    conv = nn.Conv(3, (kernel_size,), strides=stride, padding="CIRCULAR", use_bias=False)
    kernel = conv.init(KEY, x)["params"]["kernel"]
    y, vjp = jax.vjp(lambda v: conv.apply({"params": {"kernel": kernel}}, v), x)
    cotangent = rand(y.shape, seed=2)
    (expected,) = vjp(cotangent)
    transpose = nn.ConvTranspose(
        2,
        (kernel_size,),
        strides=(stride,),
        padding="CIRCULAR",
        transpose_kernel=True,
        use_bias=False,
    )
    out = transpose.apply({"params": {"kernel": kernel}}, cotangent)
    np.testing.assert_allclose(out, jnp.roll(expected, -shift, axis=1), rtol=1e-5, atol=1e-5)


def test_conv_transpose_wrong_channels():
    layer = nn.ConvTranspose(4, (3,))
    variables = layer.init(KEY, jnp.ones((1, 5, 2)))
    with pytest.raises(ValueError, match=r"ConvTranspose.*\(3, 3, 4\).*\(3, 2, 4\)"):
        layer.apply(variables, jnp.ones((1, 5, 3)))


def test_canonicalize_padding_rejects_bad_formats():
    from plait.linen.layers import canonicalize_padding

    assert canonicalize_padding("SAME", 2) == "SAME"
    with pytest.raises(ValueError, match="Invalid padding"):
        canonicalize_padding([1, 2, 3], 2)
