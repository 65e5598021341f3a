"""Both directions together: ToNNX(ToLinen(...)), ToLinen over ToNNX, metadata."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import PartitionSpec as P
from plait import bridge, nnx
from plait import linen as nn


def test_to_nnx_of_to_linen_keeps_the_nnx_layout_and_trains():
    x = jax.random.normal(jax.random.key(0), (6, 3))
    y = jnp.ones((6, 2))
    model = bridge.ToNNX(bridge.to_linen(nnx.Linear, 3, 2), rngs=nnx.Rngs(0)).lazy_init(x)
    assert type(model.kernel) is nnx.Param and model.kernel.shape == (3, 2)

    direct = nnx.Linear(3, 2, rngs=nnx.Rngs(9))
    nnx.update(direct, nnx.state(model, nnx.Param))
    np.testing.assert_allclose(model(x), direct(x), rtol=1e-6)

    optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
    direct_optimizer = nnx.Optimizer(direct, optax.sgd(0.1), wrt=nnx.Param)

    def loss(m):
        return jnp.mean((m(x) - y) ** 2)

    @nnx.jit
    def step(m, opt):
        value, grads = nnx.value_and_grad(loss)(m)
        opt.update(m, grads)
        return value

    for _ in range(3):
        np.testing.assert_allclose(
            step(model, optimizer), step(direct, direct_optimizer), rtol=1e-6
        )
    np.testing.assert_allclose(model.kernel[...], direct.kernel[...], rtol=1e-6)


def test_to_linen_of_an_nnx_module_holding_a_to_nnx():
    class Hybrid(nnx.Module):
        def __init__(self, rngs):
            self.inner = bridge.ToNNX(nn.Dense(4), rngs=rngs)
            self.head = nnx.Linear(4, 1, rngs=rngs)

        def __call__(self, x):
            return self.head(self.inner(x))

    x = jnp.ones((2, 3))
    model = bridge.ToLinen(Hybrid)
    variables = model.init(jax.random.key(0), x)
    shapes = jax.tree.map(jnp.shape, variables)
    assert shapes == {
        "params": {
            "head": {"bias": (1,), "kernel": (4, 1)},
            "inner": {"bias": (4,), "kernel": (3, 4)},
        }
    }
    params = variables["params"]
    hidden = x @ params["inner"]["kernel"] + params["inner"]["bias"][None]
    expected = hidden @ params["head"]["kernel"] + params["head"]["bias"][None]
    np.testing.assert_allclose(model.apply(variables, x), expected, rtol=1e-5)


def test_linen_logical_partitioning_survives_to_nnx_and_back():
    class Sharded(nn.Module):
        @nn.compact
        def __call__(self, x):
            init = nn.with_logical_partitioning(nn.initializers.ones, ("embed", "mlp"))
            return x @ self.param("w", init, (x.shape[-1], 4))

    x = jnp.ones((1, 2))
    model = bridge.ToNNX(Sharded(), rngs=nnx.Rngs(0)).lazy_init(x)
    assert model.w.sharding_names == ("embed", "mlp")
    assert nnx.get_partition_spec(nnx.state(model, nnx.Param))["w"][...] == P("embed", "mlp")

    linen_vars = bridge.variables.nnx_attrs_to_linen_vars({"w": model.w})
    box = linen_vars["params"]["w"]
    assert type(box) is nn.LogicallyPartitioned and box.names == ("embed", "mlp")
    with nn.logical_axis_rules([("embed", "data"), ("mlp", "model")]):
        assert box.mesh_partition_spec() == P("data", "model")
    np.testing.assert_array_equal(model(x), x @ jnp.ones((2, 4)))


def test_nnx_partitioning_survives_to_linen_and_back():
    init = nnx.with_partitioning(nnx.initializers.lecun_normal(), ("in", "out"))
    linen_model = bridge.to_linen(nnx.Linear, 3, 4, kernel_init=init)
    variables = linen_model.init(jax.random.key(0), jnp.ones((1, 3)))
    assert variables["params"]["kernel"].get_partition_spec() == P("in", "out")

    model = bridge.ToNNX(linen_model, rngs=nnx.Rngs(0)).lazy_init(jnp.ones((1, 3)))
    assert type(model.kernel) is nnx.Param and model.kernel.sharding_names == ("in", "out")


def test_partitioned_params_are_placed_on_a_mesh():
    mesh = jax.make_mesh((2, 4), ("data", "model"))
    init = nnx.with_partitioning(nnx.initializers.ones, ("data", "model"))
    linen_model = bridge.to_linen(nnx.Linear, 4, 8, kernel_init=init)
    model = bridge.ToNNX(linen_model, rngs=nnx.Rngs(0)).lazy_init(jnp.ones((1, 4)))
    shardings = nnx.get_named_sharding(nnx.state(model, nnx.Param), mesh)
    kernel = jax.device_put(model.kernel[...], shardings["kernel"][...])
    assert kernel.sharding.spec == P("data", "model")
    assert len(kernel.sharding.device_set) == 8
