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
    return jax.random.normal(jax.random.key(seed), shape, dtype)


def shapes(tree):
    return jax.tree.map(jnp.shape, tree)


class Wrapper(nn.Module):
    """Puts a layer one level down, so error messages carry a module path."""

    @nn.compact
    def __call__(self, x):
        return nn.Dense(3)(x)


def test_dense_matches_matmul_plus_bias():
    x = rand((2, 5, 4))
    layer = nn.Dense(3, bias_init=nn.initializers.normal(1.0))
    variables = layer.init(KEY, x)
    assert shapes(variables) == {"params": {"kernel": (4, 3), "bias": (3,)}}
    p = variables["params"]
    with broadcasting():
        np.testing.assert_allclose(
            layer.apply(variables, x), x @ p["kernel"] + p["bias"], rtol=1e-6
        )


def test_dense_default_initializers_are_lecun_normal_and_zeros():
    layer = nn.Dense(3)
    np.testing.assert_array_equal(
        layer.kernel_init(KEY, (4, 3)), nn.initializers.lecun_normal()(KEY, (4, 3))
    )
    params = layer.init(KEY, jnp.ones((1, 4)))["params"]
    np.testing.assert_array_equal(params["bias"], np.zeros(3))
    assert params["kernel"].dtype == jnp.float32


def test_dense_without_bias_and_custom_dot_general():
    calls = []

    def recording_dot_general(*args, **kwargs):
        calls.append(kwargs.get("precision"))
        return jax.lax.dot_general(*args, **kwargs)

    layer = nn.Dense(2, use_bias=False, dot_general=recording_dot_general)
    x = rand((3, 4))
    variables = layer.init(KEY, x)
    assert set(variables["params"]) == {"kernel"}
    np.testing.assert_allclose(
        layer.apply(variables, x), x @ variables["params"]["kernel"], rtol=1e-6
    )
    assert calls


@pytest.mark.parametrize(
    ("dtype", "param_dtype", "x_dtype", "out_dtype"),
    [
        (None, jnp.float32, jnp.float32, jnp.float32),
        (jnp.bfloat16, jnp.float32, jnp.float32, jnp.bfloat16),
        (None, jnp.bfloat16, jnp.bfloat16, jnp.bfloat16),
        (None, jnp.float32, jnp.int32, jnp.float32),
    ],
)
def test_dense_dtype_and_param_dtype(dtype, param_dtype, x_dtype, out_dtype):
    layer = nn.Dense(3, dtype=dtype, param_dtype=param_dtype)
    x = jnp.ones((2, 4), x_dtype)
    variables = layer.init(KEY, x)
    assert variables["params"]["kernel"].dtype == param_dtype
    assert layer.apply(variables, x).dtype == out_dtype


def test_dense_wrong_input_shape_names_path_shapes_and_fix():
    model = Wrapper()
    variables = model.init(KEY, jnp.ones((2, 4)))
    with pytest.raises(
        ValueError, match=r"Dense at path '/Dense_0'.*\(2, 5\).*\(5, 3\).*\(4, 3\).*re-run `init`"
    ):
        model.apply(variables, jnp.ones((2, 5)))


def test_dense_general_matches_tensordot():
    x = rand((2, 3, 4, 5))
    layer = nn.DenseGeneral(features=(6, 7), axis=(-2, -1), bias_init=nn.initializers.normal(1.0))
    variables = layer.init(KEY, x)
    p = variables["params"]
    assert shapes(p) == {"kernel": (4, 5, 6, 7), "bias": (6, 7)}
    with broadcasting():
        expected = jnp.einsum("abcd,cdef->abef", x, p["kernel"]) + p["bias"]
    np.testing.assert_allclose(layer.apply(variables, x), expected, rtol=1e-5, atol=1e-5)


def test_dense_general_batch_dims_give_one_kernel_per_batch_entry():
    x = rand((3, 2, 4))
    layer = nn.DenseGeneral(
        features=5, axis=-1, batch_dims=(0,), bias_init=nn.initializers.normal(1.0)
    )
    variables = layer.init(KEY, x)
    p = variables["params"]
    assert shapes(p) == {"kernel": (3, 4, 5), "bias": (3, 5)}
    with broadcasting():
        expected = jnp.einsum("bnd,bdf->bnf", x, p["kernel"]) + p["bias"][:, None, :]
    np.testing.assert_allclose(layer.apply(variables, x), expected, rtol=1e-5, atol=1e-5)


def test_dense_general_initializer_sees_flattened_fan_in():
    seen = []

    def init(key, shape, dtype=jnp.float32):
        seen.append(tuple(shape))
        return jnp.zeros(shape, dtype)

    nn.DenseGeneral(features=(2, 3), axis=(1, 2), kernel_init=init).init(KEY, jnp.ones((1, 4, 5)))
    assert seen == [(20, 6)]


def test_dense_general_rejects_non_leading_batch_dims():
    with pytest.raises(ValueError, match=r"batch_dims \(1,\) must be the consecutive leading axes"):
        nn.DenseGeneral(3, batch_dims=(1,)).init(KEY, jnp.ones((2, 3, 4)))


def test_einsum_matches_jnp_einsum_with_bias_over_kernel_axes():
    x = rand((3, 4, 5))
    layer = nn.Einsum((5, 6, 7), "abc,cde->abde", bias_init=nn.initializers.normal(1.0))
    variables = layer.init(KEY, x)
    p = variables["params"]
    assert shapes(p) == {"kernel": (5, 6, 7), "bias": (6, 7)}
    with broadcasting():
        expected = jnp.einsum("abc,cde->abde", x, p["kernel"]) + p["bias"]
    np.testing.assert_allclose(layer.apply(variables, x), expected, rtol=1e-5, atol=1e-5)


def test_einsum_with_ellipsis_and_equation_at_call_time():
    x = rand((2, 3, 4))
    layer = nn.Einsum((4, 5))
    variables = layer.init(KEY, x, "...d,df->...f")
    assert shapes(variables["params"]) == {"kernel": (4, 5), "bias": (5,)}
    out = layer.apply(variables, x, "...d,df->...f")
    np.testing.assert_allclose(out, x @ variables["params"]["kernel"], rtol=1e-5, atol=1e-5)


def test_einsum_errors():
    with pytest.raises(ValueError, match="must be explicit and include '->'"):
        nn.Einsum((4, 5), "bd,df").init(KEY, jnp.ones((2, 4)))
    with pytest.raises(ValueError, match=r"axis 1 of the inputs \(label 'd'\) has size 3.*size 4"):
        nn.Einsum((4, 5), "bd,df->bf").init(KEY, jnp.ones((2, 3)))


def test_embed_lookup_and_attend():
    layer = nn.Embed(num_embeddings=5, features=3)
    ids = jnp.array([[0, 4], [2, 2]])
    variables = layer.init(KEY, ids)
    table = variables["params"]["embedding"]
    assert table.shape == (5, 3)
    np.testing.assert_array_equal(layer.apply(variables, ids), table[ids])
    q = rand((2, 3))
    np.testing.assert_allclose(
        layer.apply(variables, q, method=layer.attend), q @ table.T, rtol=1e-6
    )


def test_embed_default_init_is_unit_variance_per_row():
    np.testing.assert_array_equal(
        nn.Embed(5, 3).embedding_init(KEY, (5, 3)),
        nn.initializers.variance_scaling(1.0, "fan_in", "normal", out_axis=0)(KEY, (5, 3)),
    )


def test_embed_single_row_broadcasts_and_marks_other_ids_nan():
    layer = nn.Embed(num_embeddings=1, features=2)
    variables = layer.init(KEY, jnp.array([0]))
    out = layer.apply(variables, jnp.array([0, 1]))
    np.testing.assert_array_equal(out[0], variables["params"]["embedding"][0])
    assert bool(jnp.isnan(out[1]).all())


def test_embed_errors():
    layer = nn.Embed(5, 3)
    variables = layer.init(KEY, jnp.array([1]))
    with pytest.raises(ValueError, match="must be an integer or unsigned integer array"):
        layer.apply(variables, jnp.array([1.0]))
    with pytest.raises(ValueError, match=r"features=3, got query of shape \(2, 4\)"):
        layer.apply(variables, jnp.ones((2, 4)), method=layer.attend)


def test_embed_dtype():
    layer = nn.Embed(5, 3, dtype=jnp.bfloat16)
    variables = layer.init(KEY, jnp.array([1]))
    assert variables["params"]["embedding"].dtype == jnp.float32
    assert layer.apply(variables, jnp.array([1])).dtype == jnp.bfloat16


def test_dense_general_keeps_partitioning_metadata_through_the_flattened_init():
    init = nn.with_partitioning(nn.initializers.lecun_normal(), ("embed", "heads", "kv"))
    layer = nn.DenseGeneral((2, 3), kernel_init=init)
    variables = layer.init(KEY, jnp.ones((2, 4)))
    assert nn.get_partition_spec(variables)["params"]["kernel"] == jax.sharding.PartitionSpec(
        "embed", "heads", "kv"
    )
    kernel = nn.unbox(variables)["params"]["kernel"]
    assert kernel.shape == (4, 2, 3)
    np.testing.assert_allclose(
        layer.apply(variables, jnp.ones((2, 4))),
        jnp.broadcast_to(kernel.sum(0), (2, 2, 3)),
        rtol=1e-5,
        atol=1e-6,
    )
