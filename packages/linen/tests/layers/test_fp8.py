"""FP8 delayed scaling: quantization against a hand-written fp8 rounding, the
"overwrite with gradient" state, and the fp8 modules against float32 layers."""

import doctest
import importlib
import math
from collections import deque

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax import lax
from plait import linen as nn
from plait.linen import fp8_ops
from plait.linen.training import train_state

KEY = jax.random.key(0)
OWG = "_overwrite_with_gradient"

# Fp8DotGeneralOp (and its NANOO subclass) warns on every call; one test checks it.
pytestmark = pytest.mark.filterwarnings("ignore:.*deprecated in Flax:DeprecationWarning")

# (mantissa bits, smallest normal exponent, largest finite value) of each fp8 format.
FORMATS = {
    jnp.float8_e4m3fn: (3, -6, 448.0),
    jnp.float8_e5m2: (2, -14, 57344.0),
    jnp.float8_e4m3fnuz: (3, -7, 240.0),
    jnp.float8_e5m2fnuz: (2, -15, 57344.0),
}


def round_to_fp8(values, fp8_dtype):
    """Saturate to the format's range, then round to nearest (ties to even) on its grid."""
    mantissa_bits, min_exponent, largest = FORMATS[fp8_dtype]
    values = np.clip(np.asarray(values, np.float64), -largest, largest)
    magnitude = np.maximum(np.abs(values), np.finfo(np.float64).tiny)
    exponent = np.maximum(np.floor(np.log2(magnitude)), min_exponent)
    step = 2.0 ** (exponent - mantissa_bits)
    return np.round(values / step) * step


def reference_qdq(values, fp8_dtype, scale):
    return round_to_fp8(np.asarray(values) / scale, fp8_dtype) * scale


def rand(shape, seed=1, scale=1.0):
    return scale * jax.random.normal(jax.random.key(seed), shape, jnp.float32)


# --- quantization ----------------------------------------------------------------------


@pytest.mark.parametrize("fp8_dtype", list(FORMATS))
def test_get_fp8_max_is_the_largest_finite_value(fp8_dtype):
    fp8_max = fp8_ops.get_fp8_max(fp8_dtype, jnp.float32)
    assert fp8_max.dtype == jnp.float32 and float(fp8_max) == FORMATS[fp8_dtype][2]


def test_get_fp8_max_rejects_other_dtypes():
    with pytest.raises(ValueError, match="float16 is not an fp8 dtype.*float8_e4m3fn"):
        fp8_ops.get_fp8_max(jnp.float16, jnp.float32)


@pytest.mark.parametrize("fp8_dtype", list(FORMATS))
def test_quantize_rounds_like_the_hand_reference(fp8_dtype):
    scale = 0.75
    # Normal values, subnormals, ties and values past the largest fp8 number.
    x = np.concatenate(
        [np.asarray(rand((64,), seed=2, scale=30.0)), [0.0, 1e-4, -3e-3, 1.0625, 1e6, -1e6]]
    )
    q = fp8_ops.quantize(jnp.asarray(x, jnp.float32), fp8_dtype, jnp.array([scale]), jnp.float32)
    assert q.dtype == fp8_dtype
    np.testing.assert_array_equal(
        np.asarray(q.astype(jnp.float32)), round_to_fp8(x.astype(np.float32) / scale, fp8_dtype)
    )


@pytest.mark.parametrize("fp8_dtype", list(FORMATS))
def test_qdq_round_trip_error_is_half_a_step(fp8_dtype):
    mantissa_bits, min_exponent, largest = FORMATS[fp8_dtype]
    scale = 0.01
    # Magnitudes that land in the normal range once divided by the scale.
    magnitudes = np.geomspace(2.0**min_exponent, largest / 2, 200) * scale
    x = jnp.asarray(magnitudes * np.where(np.arange(200) % 2, -1.0, 1.0), jnp.float32)
    round_trip = fp8_ops.qdq(x, fp8_dtype, jnp.array([scale]), jnp.float32)
    relative = np.abs(np.asarray(round_trip) - np.asarray(x)) / np.abs(np.asarray(x))
    assert relative.max() <= 2.0 ** -(mantissa_bits + 1) + 1e-6
    assert relative.max() > 2.0 ** -(mantissa_bits + 3)  # some values really were rounded
    np.testing.assert_allclose(
        fp8_ops.dequantize(
            fp8_ops.quantize(x, fp8_dtype, jnp.array([scale]), jnp.float32),
            jnp.float32,
            jnp.array([scale]),
        ),
        round_trip,
    )


def test_qdq_saturates_at_the_scaled_fp8_range():
    x = jnp.array([500.0, -1e9, 100.0])
    np.testing.assert_array_equal(
        fp8_ops.qdq(x, jnp.float8_e4m3fn, jnp.array([0.5]), jnp.float32), [224.0, -224.0, 96.0]
    )
    np.testing.assert_array_equal(
        fp8_ops.qdq(x, jnp.float8_e4m3fnuz, jnp.array([1.0]), jnp.float32), [240.0, -240.0, 96.0]
    )


@pytest.mark.parametrize(
    ("amax", "scale", "margin", "expected"),
    [
        (896.0, 1.0, 0, 2.0),
        (896.0, 1.0, 1, 4.0),  # a margin leaves headroom: amax maps to fp8_max / 2
        (0.0, 3.0, 0, 3.0),  # no history yet: keep the scale
        (math.inf, 3.0, 0, 3.0),  # overflow: keep the scale
        (math.nan, 3.0, 0, 3.0),
    ],
)
def test_compute_scale(amax, scale, margin, expected):
    new = fp8_ops.compute_scale(jnp.float32(amax), jnp.array([scale]), 448.0, margin)
    assert new.shape == (1,) and new.dtype == jnp.float32
    assert float(new[0]) == expected


def test_amax_history_keeps_the_last_steps():
    history = jnp.zeros(3)
    window = deque(maxlen=3)
    for step, value in enumerate([2.0, 7.0, 1.0, 3.0, 0.5, 0.25, 4.0]):
        x = jnp.array([value * (-1) ** step, value / 2])
        history = fp8_ops.compute_amax_history(x, history)
        window.append(value)
        assert float(history[0]) == value  # newest first
        assert sorted(np.asarray(history).tolist()) == sorted(
            list(window) + [0.0] * (3 - len(window))
        )


# --- the custom VJPs: gradients of the fp8 state are its new values ---------------------


def test_in_qdq_passes_gradients_through_and_returns_the_new_state():
    x = jnp.array([1.1, -40.0, 3.3])
    history = jnp.array([0.0, 224.0, 5.0])
    scale = jnp.array([1.0])
    g = jnp.array([0.5, 2.0, -1.0])

    y, vjp = jax.vjp(
        lambda x, s, h: fp8_ops.in_qdq(jnp.float32, jnp.float8_e4m3fn, x, s, h),
        x,
        scale,
        history,
    )
    dx, d_scale, d_history = vjp(g)

    new_scale = 224.0 / 448.0  # from the history before this step
    np.testing.assert_array_equal(y, reference_qdq(x, jnp.float8_e4m3fn, new_scale))
    np.testing.assert_array_equal(dx, g)  # straight-through
    np.testing.assert_array_equal(d_scale, [new_scale])
    np.testing.assert_array_equal(d_history, [40.0, 5.0, 0.0])


def test_out_qdq_is_identity_forward_and_rounds_the_gradient_to_e5m2():
    y = jnp.array([1.0, 2.0])
    g = jnp.array([1.1, -3.3])
    history = jnp.array([0.0, 57344.0 * 4])
    out, vjp = jax.vjp(
        lambda y, s, h: fp8_ops.out_qdq(jnp.float32, jnp.float8_e5m2, y, s, h),
        y,
        jnp.ones(1),
        history,
    )
    dy, d_scale, d_history = vjp(g)
    np.testing.assert_array_equal(out, y)
    np.testing.assert_array_equal(d_scale, [4.0])
    np.testing.assert_array_equal(dy, reference_qdq(g, jnp.float8_e5m2, 4.0))
    np.testing.assert_allclose(d_history, [3.3, 0.0])


def test_fm32_state_used_several_times_gets_its_new_value_once():
    def loss(scale, history, meta_dtype):
        scale = lax.convert_element_type(scale, meta_dtype)
        history = lax.convert_element_type(history, meta_dtype)

        def body(carry, _):
            return fp8_ops.in_qdq(jnp.float32, jnp.float8_e4m3fn, carry, scale, history), None

        out, _ = lax.scan(body, jnp.array([3.0, -5.0]), None, length=3)
        return out.sum()

    grad = jax.jit(jax.grad(loss, argnums=(0, 1)), static_argnums=2)
    scale, history = jnp.array([2.0]), jnp.array([0.0, 896.0])
    d_scale, d_history = grad(scale, history, fp8_ops.fm32)
    np.testing.assert_array_equal(d_scale, [2.0])
    np.testing.assert_array_equal(d_history, [5.0, 0.0])
    # With float32 state the three uses add up: the reason fm32 exists.
    d_scale, d_history = grad(scale, history, jnp.float32)
    np.testing.assert_array_equal(d_history, [15.0, 0.0])
    assert fp8_ops.fp32_max_grad is fp8_ops.fm32 and fp8_ops.fm32.name == "fp8_meta32"


@pytest.mark.parametrize(
    ("lhs_shape", "rhs_shape", "dimension_numbers"),
    [
        ((5, 2, 3, 4), (4, 5, 6, 3), (((3, 2), (0, 3)), ((0,), (1,)))),
        ((3, 2, 4), (2, 4, 3), (((2, 0), (1, 2)), ((1,), (0,)))),
    ],
)
def test_dot_general_transposes_match_autodiff(lhs_shape, rhs_shape, dimension_numbers):
    lhs, rhs = rand(lhs_shape, seed=3), rand(rhs_shape, seed=4)
    common = dict(
        dimension_numbers=dimension_numbers,
        precision=lax.Precision.HIGHEST,
        preferred_element_type=None,
    )

    @jax.jit
    def both_ways(lhs, rhs):
        out, vjp = jax.vjp(lambda a, b: lax.dot_general(a, b, dimension_numbers), lhs, rhs)
        g = jnp.sin(jnp.arange(out.size, dtype=jnp.float32)).reshape(out.shape)
        ours = (
            fp8_ops.dot_general_transpose_lhs(g, lhs, rhs, **common),
            fp8_ops.dot_general_transpose_rhs(g, lhs, rhs, **common),
        )
        return vjp(g), ours

    expected, ours = both_ways(lhs, rhs)
    for mine, reference in zip(ours, expected, strict=True):
        np.testing.assert_allclose(mine, reference, rtol=1e-5, atol=1e-5)


def test_dot_general_with_precision_matches_dot_general_and_warns_on_precision():
    lhs, rhs = rand((3, 4), seed=6), rand((4, 2), seed=7)
    dn = (((1,), (0,)), ((), ()))
    value, grads = jax.value_and_grad(
        lambda a, b: fp8_ops.dot_general_with_precision(a, b, dn).sum(), argnums=(0, 1)
    )(lhs, rhs)
    np.testing.assert_allclose(value, (lhs @ rhs).sum(), rtol=1e-5)
    np.testing.assert_allclose(grads[0], jnp.ones((3, 2)) @ rhs.T, rtol=1e-5)
    np.testing.assert_allclose(grads[1], lhs.T @ jnp.ones((3, 2)), rtol=1e-5)
    with pytest.warns(UserWarning, match="ignores precision=.*HIGHEST"):
        fp8_ops.dot_general_with_precision(lhs, rhs, dn, lax.Precision.HIGHEST)


def test_fp8_scaled_dot_general_requires_its_state():
    with pytest.raises(ValueError, match="grad_scale, grad_amax_history must be given"):
        fp8_ops.fp8_scaled_dot_general(
            jnp.ones((2, 3)),
            jnp.ones((3, 4)),
            (((1,), (0,)), ((), ())),
            lhs_scale=jnp.ones(1),
            rhs_scale=jnp.ones(1),
            lhs_amax_history=jnp.zeros(2),
            rhs_amax_history=jnp.zeros(2),
        )


# --- the modules ------------------------------------------------------------------------

FP8_OPS = [nn.Fp8DotGeneralOp, nn.Fp8DirectDotGeneralOp, nn.NANOOFp8DotGeneralOp]


def fp8_dense(op, features=5):
    return nn.Dense(features, dot_general_cls=op, bias_init=nn.initializers.normal(0.1))


def dense_reference(params, x, op, input_scale=1.0, kernel_scale=1.0):
    fp8 = jnp.float8_e4m3fnuz if op is nn.NANOOFp8DotGeneralOp else jnp.float8_e4m3fn
    x_q = reference_qdq(x, fp8, input_scale)
    kernel_q = reference_qdq(params["kernel"], fp8, kernel_scale)
    return x_q @ kernel_q + np.asarray(params["bias"])


@pytest.mark.parametrize("op", FP8_OPS, ids=lambda op: op.__name__)
def test_fp8_dense_matches_the_hand_reference_and_float32(op):
    x = rand((4, 8), seed=8)
    layer = fp8_dense(op)
    variables = jax.jit(layer.init)(KEY, x)
    name = op.__name__ + "_0"
    state = variables[OWG][name]
    assert jax.tree.map(jnp.shape, state) == {
        "input_amax_history": (1024,),
        "input_scale": (1,),
        "kernel_amax_history": (1024,),
        "kernel_scale": (1,),
        "output_grad_amax_history": (1024,),
        "output_grad_scale": (1,),
    }
    y = jax.jit(layer.apply)(variables, x)
    np.testing.assert_allclose(y, dense_reference(variables["params"], x, op), rtol=1e-5, atol=1e-6)
    y_float = jax.jit(nn.Dense(5).apply)({"params": variables["params"]}, x)
    # e4m3 keeps 3 mantissa bits: each operand is off by at most 1/16 of itself.
    assert float(jnp.max(jnp.abs(y - y_float))) < 0.1 * float(jnp.max(jnp.abs(y_float)))


def train_step(layer, state, x, target):
    def loss(variables):
        return ((state.apply_fn(variables, x) - target) ** 2).sum()

    grads = jax.grad(loss)(state.params)
    return state.apply_gradients(grads=grads), grads


@pytest.mark.parametrize(
    "op", [nn.Fp8DotGeneralOp, nn.Fp8DirectDotGeneralOp], ids=lambda op: op.__name__
)
def test_a_train_step_records_amax_and_the_next_step_uses_it(op):
    x = rand((4, 8), seed=9, scale=3.0)
    target = rand((4, 5), seed=10)
    layer = nn.Dense(5, dot_general_cls=lambda: op(amax_history_length=4))
    variables = jax.jit(layer.init)(KEY, x)
    state = train_state.TrainState.create(
        apply_fn=layer.apply, params=variables, tx=optax.sgd(0.01)
    )
    step = jax.jit(train_step, static_argnums=0)

    state_1, grads_1 = step(layer, state, x, target)
    name = op.__name__ + "_0"
    kernel_0 = variables["params"]["kernel"]
    # The gradient of dL/dy that reached the op: 2 (y - target), y computed in fp8.
    apply = jax.jit(layer.apply)
    y_0 = apply(variables, x)
    dy_0 = 2.0 * (y_0 - target)
    owg_1 = state_1.params[OWG][name]
    # The "gradients" of the fp8 state are its new values, and TrainState stores them.
    assert jax.tree.map(np.asarray, grads_1[OWG][name]).keys() == owg_1.keys()
    for key in owg_1:
        np.testing.assert_array_equal(owg_1[key], grads_1[OWG][name][key])
    amax = {
        "input": float(jnp.max(jnp.abs(x))),
        "kernel": float(jnp.max(jnp.abs(kernel_0))),
        "output_grad": float(jnp.max(jnp.abs(dy_0))),
    }
    for kind, value in amax.items():
        np.testing.assert_allclose(owg_1[f"{kind}_amax_history"], [value, 0, 0, 0], rtol=1e-6)
        np.testing.assert_array_equal(owg_1[f"{kind}_scale"], [1.0])  # no history before
    # The params took an optimizer step with a gradient close to the float32 one.
    float_grads = jax.jit(
        jax.grad(lambda p: ((nn.Dense(5).apply({"params": p}, x) - target) ** 2).sum())
    )(variables["params"])
    kernel_grad = grads_1["params"]["kernel"]
    assert float(jnp.max(jnp.abs(kernel_grad - float_grads["kernel"]))) < 0.15 * float(
        jnp.max(jnp.abs(float_grads["kernel"]))
    )
    np.testing.assert_allclose(
        state_1.params["params"]["kernel"], kernel_0 - 0.01 * kernel_grad, rtol=1e-6, atol=1e-7
    )

    # Step 2 quantizes with the scales derived from step 1's amax (delayed scaling).
    state_2, _ = step(layer, state_1, x, target)
    owg_2 = state_2.params[OWG][name]
    np.testing.assert_allclose(owg_2["input_scale"], [amax["input"] / 448.0], rtol=1e-6)
    np.testing.assert_allclose(owg_2["kernel_scale"], [amax["kernel"] / 448.0], rtol=1e-6)
    np.testing.assert_allclose(
        owg_2["output_grad_scale"], [amax["output_grad"] / 57344.0], rtol=1e-6
    )
    np.testing.assert_allclose(
        owg_2["input_amax_history"], [amax["input"], 0, 0, amax["input"]], rtol=1e-6
    )
    y_1 = apply(state_1.params, x)
    expected = dense_reference(
        state_1.params["params"], x, op, amax["input"] / 448.0, amax["kernel"] / 448.0
    )
    np.testing.assert_allclose(y_1, expected, rtol=1e-5, atol=1e-5)


def test_direct_and_qdq_ops_give_the_same_gradients():
    x = rand((3, 2, 6), seed=11, scale=2.0)
    layers = [
        nn.DenseGeneral((2, 3), axis=-1, dot_general_cls=op)
        for op in (nn.Fp8DotGeneralOp, nn.Fp8DirectDotGeneralOp)
    ]
    variables = [jax.jit(layer.init)(KEY, x) for layer in layers]
    # Non-trivial scales, taken from a history as a previous step would have left it.
    for v in variables:
        state = next(iter(v[OWG].values()))
        for kind, amax in (("input", 100.0), ("kernel", 3.0), ("output_grad", 1000.0)):
            state[f"{kind}_amax_history"] = state[f"{kind}_amax_history"].at[3].set(amax)
    c = rand((3, 2, 2, 3), seed=12)
    grads = [
        jax.jit(jax.grad(lambda v, x, layer=layer: (layer.apply(v, x) * c).sum(), argnums=(0, 1)))(
            v, x
        )
        for layer, v in zip(layers, variables, strict=True)
    ]
    (qdq_vars, qdq_x), (direct_vars, direct_x) = grads
    np.testing.assert_allclose(qdq_x, direct_x, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        qdq_vars["params"]["kernel"], direct_vars["params"]["kernel"], rtol=1e-5, atol=1e-6
    )
    qdq_state, direct_state = (next(iter(g[OWG].values())) for g in (qdq_vars, direct_vars))
    for key in qdq_state:
        np.testing.assert_allclose(qdq_state[key], direct_state[key], rtol=1e-6)
    np.testing.assert_allclose(qdq_state["kernel_scale"], [3.0 / 448.0], rtol=1e-6)


def test_nanoo_op_uses_the_fnuz_formats():
    op = nn.NANOOFp8DotGeneralOp()
    assert (op.e4m3_dtype, op.e5m2_dtype) == (jnp.float8_e4m3fnuz, jnp.float8_e5m2fnuz)
    x = jnp.array([[300.0, 1.0]])
    kernel = jnp.eye(2)
    results = {}
    for cls in (nn.Fp8DotGeneralOp, nn.NANOOFp8DotGeneralOp):
        module = nn.Dense(2, use_bias=False, dot_general_cls=cls)
        variables = jax.jit(module.init)(KEY, x) | {"params": {"kernel": kernel}}
        results[cls] = jax.jit(module.apply)(variables, x)
    np.testing.assert_array_equal(results[nn.NANOOFp8DotGeneralOp], [[240.0, 1.0]])  # saturated
    np.testing.assert_array_equal(results[nn.Fp8DotGeneralOp], [[288.0, 1.0]])  # rounded


def test_direct_op_honours_the_fnuz_formats():
    module = nn.Dense(
        2,
        use_bias=False,
        dot_general_cls=lambda: nn.Fp8DirectDotGeneralOp(
            e4m3_dtype=jnp.float8_e4m3fnuz, e5m2_dtype=jnp.float8_e5m2fnuz
        ),
    )
    x = jnp.array([[300.0, 1.0]])
    variables = module.init(KEY, x) | {"params": {"kernel": jnp.eye(2)}}
    np.testing.assert_array_equal(module.apply(variables, x), [[240.0, 1.0]])


def test_direct_op_rejects_a_mismatched_fp8_pair():
    module = nn.Dense(
        2,
        dot_general_cls=lambda: nn.Fp8DirectDotGeneralOp(
            e4m3_dtype=jnp.float8_e4m3fn, e5m2_dtype=jnp.float8_e5m2fnuz
        ),
    )
    with pytest.raises(
        ValueError,
        match="Fp8DirectDotGeneralOp.*e4m3_dtype=float8_e4m3fn goes with e5m2_dtype=float8_e5m2 ",
    ):
        module.init(KEY, jnp.ones((1, 2)))


def test_fp8_op_called_without_dimension_numbers_explains_the_call():
    class Calls(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Fp8DirectDotGeneralOp(name="fp8")(x, x.T)

    with pytest.raises(
        ValueError, match="Fp8DirectDotGeneralOp at path '/fp8'.*dimension_numbers missing"
    ):
        Calls().init(KEY, jnp.ones((2, 2)))


@pytest.mark.filterwarnings("error::DeprecationWarning")
def test_fp8_dot_general_op_warns_that_it_is_deprecated():
    layer = nn.Dense(2, dot_general_cls=nn.Fp8DotGeneralOp)
    with pytest.warns(DeprecationWarning, match="^Fp8DotGeneralOp .*use Fp8DirectDotGeneralOp"):
        layer.init(KEY, jnp.ones((1, 3)))


def test_fp8_einsum_matches_the_hand_reference():
    lhs, rhs = rand((2, 3, 4), seed=13), rand((4, 5), seed=14)
    einsum = nn.Fp8Einsum(amax_history_length=8)
    y, variables = einsum.init_with_output(KEY, "bij,jk->bik", lhs, rhs)
    expected = np.einsum(
        "bij,jk->bik",
        reference_qdq(lhs, jnp.float8_e4m3fn, 1.0),
        reference_qdq(rhs, jnp.float8_e4m3fn, 1.0),
    )
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    grads = jax.jit(jax.grad(lambda v: einsum.apply(v, "bij,jk->bik", lhs, rhs).sum()))(variables)
    np.testing.assert_allclose(grads[OWG]["input_amax_history"][0], jnp.max(jnp.abs(lhs)))
    np.testing.assert_allclose(grads[OWG]["kernel_amax_history"][0], jnp.max(jnp.abs(rhs)))


def test_fp8_einsum_in_attention_stays_close_to_float32():
    x = rand((2, 4, 8), seed=15)
    common = dict(num_heads=2, qkv_features=8)
    fp8_attention = nn.MultiHeadDotProductAttention(
        **common,
        qk_attn_weights_einsum_cls=nn.Fp8Einsum,
        attn_weights_value_einsum_cls=nn.Fp8Einsum,
    )
    variables = jax.jit(fp8_attention.init)(KEY, x)
    assert len(variables[OWG]) == 2
    y = jax.jit(fp8_attention.apply)(variables, x)
    y_float = jax.jit(nn.MultiHeadDotProductAttention(**common).apply)(
        {"params": variables["params"]}, x
    )
    assert float(jnp.max(jnp.abs(y - y_float))) < 0.1 * float(jnp.max(jnp.abs(y_float)))


def test_public_names_and_the_collection_constant():
    assert nn.Fp8DotGeneral is nn.Fp8DirectDotGeneralOp
    assert issubclass(nn.NANOOFp8DotGeneralOp, nn.Fp8DotGeneralOp)
    assert issubclass(nn.Fp8Einsum, fp8_ops.Fp8DotGeneralBase)
    assert fp8_ops.OVERWRITE_WITH_GRADIENT == train_state.OVERWRITE_WITH_GRADIENT == OWG
    assert fp8_ops.CAN_USE_EARRAY is True
    assert nn.fp8_ops is fp8_ops
    for name in fp8_ops.__all__:
        assert getattr(fp8_ops, name) is not None, name


@pytest.mark.parametrize(
    "name",
    [
        "plait.linen.layers.fp8_ops",
        "plait.linen.layers._fp8",
        "plait.linen.layers._fp8_dot",
        "plait.linen.layers._fp8_meta",
        "plait.linen.layers._fp8_quant",
    ],
)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
