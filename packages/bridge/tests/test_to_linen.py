"""ToLinen / to_linen: NNX modules used inside Linen."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from plait import bridge, nnx
from plait import linen as nn


class _Compact(nn.Module):
    @nn.compact
    def __call__(self, x):
        return bridge.to_linen(nnx.Linear, x.shape[-1], 4)(x)


def test_init_gives_params_with_the_right_shapes():
    variables = _Compact().init(jax.random.key(0), jnp.ones((2, 3)))
    assert jax.tree.map(jnp.shape, variables) == {
        "params": {"ToLinen_0": {"bias": (4,), "kernel": (3, 4)}}
    }


def test_apply_matches_calling_the_nnx_module_directly():
    x = jax.random.normal(jax.random.key(3), (5, 3))
    variables = _Compact().init(jax.random.key(0), x)
    params = variables["params"]["ToLinen_0"]

    direct = nnx.Linear(3, 4, rngs=nnx.Rngs(123))
    direct.kernel[...] = params["kernel"]
    direct.bias[...] = params["bias"]

    out = _Compact().apply(variables, x)
    np.testing.assert_allclose(out, direct(x), rtol=1e-6)
    np.testing.assert_allclose(out, x @ params["kernel"] + params["bias"][None], rtol=1e-5)


def test_init_draws_parameters_from_the_linen_params_stream():
    x = jnp.ones((1, 3))
    a = _Compact().init(jax.random.key(0), x)["params"]["ToLinen_0"]["kernel"]
    b = _Compact().init(jax.random.key(0), x)["params"]["ToLinen_0"]["kernel"]
    c = _Compact().init(jax.random.key(1), x)["params"]["ToLinen_0"]["kernel"]
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_apply_builds_the_module_abstractly_unless_told_otherwise():
    concrete_calls = []

    def recording_init(key, shape, dtype=jnp.float32):
        concrete_calls.append(not isinstance(key, jax.core.Tracer))
        return jnp.ones(shape, dtype)

    x = jnp.ones((1, 2))
    abstract = bridge.to_linen(nnx.Linear, 2, 2, kernel_init=recording_init)
    eager = bridge.to_linen(nnx.Linear, 2, 2, kernel_init=recording_init, abstract_init=False)
    variables = abstract.init(jax.random.key(0), x)
    assert concrete_calls == [True]  # init builds the module for real

    concrete_calls.clear()
    y_abstract = abstract.apply(variables, x)
    assert concrete_calls == [False]  # traced under eval_shape: no array computed
    concrete_calls.clear()
    y_eager = eager.apply(variables, x)
    assert concrete_calls == [True]
    np.testing.assert_array_equal(y_abstract, y_eager)


class _BNBlock(nn.Module):
    train: bool = True

    @nn.compact
    def __call__(self, x):
        x = bridge.to_linen(nnx.Linear, 3, 4)(x)
        return bridge.to_linen(nnx.BatchNorm, 4, momentum=0.5, use_running_average=not self.train)(
            x
        )


def test_batch_stats_collection_and_mutable_updates_match_nnx():
    x = jax.random.normal(jax.random.key(4), (6, 3))
    variables = _BNBlock().init(jax.random.key(0), x)
    assert jax.tree.map(jnp.shape, variables["batch_stats"]) == {
        "ToLinen_1": {"mean": (4,), "var": (4,)}
    }

    out, updates = _BNBlock().apply(variables, x, mutable=["batch_stats"])

    linear = nnx.Linear(3, 4, rngs=nnx.Rngs(0))
    linear.kernel[...] = variables["params"]["ToLinen_0"]["kernel"]
    linear.bias[...] = variables["params"]["ToLinen_0"]["bias"]
    norm = nnx.BatchNorm(4, momentum=0.5, rngs=nnx.Rngs(0))
    expected = norm(linear(x))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        updates["batch_stats"]["ToLinen_1"]["mean"], norm.mean[...], rtol=1e-6
    )
    assert sorted(updates) == ["batch_stats"]


def test_nnx_updates_to_an_immutable_collection_are_an_error():
    x = jnp.arange(6.0).reshape(2, 3)
    variables = _BNBlock().init(jax.random.key(0), x)
    with pytest.raises(
        bridge.MutabilityError,
        match=r"(?s)ToLinen\(BatchNorm\) at /ToLinen_1.*mean.*Fix: make the collection mutable",
    ):
        _BNBlock().apply(variables, x)
    assert _BNBlock(train=False).apply(variables, x).shape == (2, 4)


class _DropBlock(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool):
        return bridge.to_linen(nnx.Dropout, 0.5, deterministic=not train)(x)


def test_dropout_uses_the_linen_dropout_stream():
    x = jnp.ones((4, 32))
    variables = _DropBlock().init(jax.random.key(0), x, train=False)
    a = _DropBlock().apply(variables, x, train=True, rngs={"dropout": jax.random.key(1)})
    b = _DropBlock().apply(variables, x, train=True, rngs={"dropout": jax.random.key(1)})
    c = _DropBlock().apply(variables, x, train=True, rngs={"dropout": jax.random.key(2)})
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert set(np.unique(np.asarray(a))) <= {0.0, 2.0}
    np.testing.assert_array_equal(_DropBlock().apply(variables, x, train=False), x)


def test_partition_metadata_becomes_an_nnxmeta_box():
    init = nnx.with_partitioning(nnx.initializers.lecun_normal(), ("in", "out"))
    model = bridge.to_linen(nnx.Linear, 3, 4, kernel_init=init)
    variables = model.init(jax.random.key(0), jnp.ones((1, 3)))
    box = variables["params"]["kernel"]
    assert isinstance(box, bridge.NNXMeta) and box.var_type is nnx.Param
    assert box.get_partition_spec() == jax.sharding.PartitionSpec("in", "out")
    assert nn.unbox(variables)["params"]["kernel"].shape == (3, 4)
    assert not isinstance(variables["params"]["bias"], bridge.NNXMeta)  # no metadata: bare
    assert model.apply(variables, jnp.ones((2, 3))).shape == (2, 4)


def test_metadata_fn_none_stores_bare_values():
    init = nnx.with_partitioning(nnx.initializers.ones, ("in", "out"))
    model = bridge.ToLinen(nnx.Linear, args=(2, 2), kwargs={"kernel_init": init}, metadata_fn=None)
    variables = model.init(jax.random.key(0), jnp.ones((1, 2)))
    assert isinstance(variables["params"]["kernel"], jax.Array)


def test_skip_rng_and_kwargs():
    class Fixed(nnx.Module):
        def __init__(self, scale):
            self.scale = nnx.Param(jnp.full((2,), scale))

        def __call__(self, x):
            return x * self.scale

    model = bridge.ToLinen(Fixed, kwargs={"scale": 3.0}, skip_rng=True)
    variables = model.init(jax.random.key(0), jnp.ones(2))
    np.testing.assert_array_equal(model.apply(variables, jnp.ones(2)), [3.0, 3.0])


class _Encoder(nnx.Module):
    def __init__(self, rngs):
        self.linear = nnx.Linear(2, 3, rngs=rngs)

    def __call__(self, x):
        return self.linear(x)

    def encode(self, x):
        return 2 * self.linear(x)


def test_nnx_methods_are_reachable_by_name_and_attribute():
    model = bridge.ToLinen(_Encoder)
    variables = model.init(jax.random.key(0), jnp.ones((1, 2)))
    assert jax.tree.map(jnp.shape, variables) == {
        "params": {"linear": {"bias": (3,), "kernel": (2, 3)}}
    }
    x = jnp.ones((1, 2))
    plain = model.apply(variables, x)
    np.testing.assert_allclose(model.apply(variables, x, nnx_method="encode"), 2 * plain)
    np.testing.assert_allclose(
        model.apply(variables, x, method=lambda m, x: m.encode(x)), 2 * plain
    )


def test_to_linen_class_takes_nnx_keyword_arguments():
    LinenLinear = bridge.wrappers.to_linen_class(nnx.Linear, in_features=3)

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            return LinenLinear(out_features=2, name="proj")(x)

    variables = Model().init(jax.random.key(0), jnp.ones((1, 3)))
    assert jax.tree.map(jnp.shape, variables) == {
        "params": {"proj": {"bias": (2,), "kernel": (3, 2)}}
    }


def test_linen_rngs_dict_needs_a_bound_module():
    with pytest.raises(bridge.BridgeError, match=r"(?s)unbound.*Fix: call it from inside"):
        bridge.wrappers.linen_rngs_dict(nn.Dense(2))


def test_missing_collection_names_the_path_and_the_fix():
    model = bridge.to_linen(nnx.BatchNorm, 3)
    variables = model.init(jax.random.key(0), jnp.ones((2, 3)))
    with pytest.raises(
        bridge.BridgeError,
        match=r"(?s)at mean \(collection 'batch_stats'\).*Fix: pass the whole variables dict",
    ):
        model.apply({"params": variables["params"]}, jnp.ones((2, 3)), mutable=["batch_stats"])


def test_unknown_paths_in_the_variables_warn():
    model = bridge.to_linen(nnx.Linear, 2, 2)
    variables = model.init(jax.random.key(0), jnp.ones((1, 2)))
    extra = {"params": {**variables["params"], "stray": jnp.zeros(1)}}
    with pytest.warns(bridge.UnknownStateWarning, match=r"\['params/stray'\]"):
        model.apply(extra, jnp.ones((1, 2)))


def test_jit_of_linen_apply():
    x = jnp.ones((2, 3))
    variables = _Compact().init(jax.random.key(0), x)
    np.testing.assert_allclose(
        jax.jit(_Compact().apply)(variables, x), _Compact().apply(variables, x), rtol=1e-6
    )
