"""Partitioning metadata: boxes, logical rules, sharding on a simulated 8-device mesh."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec
from plait import linen as nn
from plait.linen import errors
from plait.linen import partitioning as nn_partitioning

KEY = jax.random.key(0)


class Sharded(nn.Module):
    @nn.compact
    def __call__(self, x):
        kernel = self.param(
            "kernel",
            nn.with_logical_partitioning(jax.nn.initializers.ones, ("embed", "mlp")),
            (x.shape[-1], 16),
        )
        bias = self.param(
            "bias", nn.with_partitioning(jax.nn.initializers.zeros, ("model",)), (16,)
        )
        return x @ kernel + bias[None]


def test_params_keep_boxes_and_param_returns_the_raw_value():
    x = jnp.ones((2, 8))
    variables = Sharded().init(KEY, x)
    kernel, bias = variables["params"]["kernel"], variables["params"]["bias"]
    assert isinstance(kernel, nn.LogicallyPartitioned) and kernel.names == ("embed", "mlp")
    assert isinstance(bias, nn.Partitioned) and bias.value.shape == (16,)
    np.testing.assert_allclose(Sharded().apply(variables, x), jnp.full((2, 16), 8.0))
    unboxed = nn.unbox(variables)
    assert unboxed["params"]["kernel"].shape == (8, 16)


def test_get_partition_spec_gives_logical_names_as_flax_does():
    variables = jax.eval_shape(Sharded().init, KEY, jnp.ones((2, 8)))
    with nn.logical_axis_rules([("embed", None), ("mlp", "model")]):
        specs = nn.get_partition_spec(variables)
        box = variables["params"]["kernel"]
        assert box.mesh_partition_spec() == PartitionSpec(None, "model")
    assert specs["params"]["kernel"] == PartitionSpec("embed", "mlp")
    assert specs["params"]["bias"] == PartitionSpec("model")  # a plain Partitioned box
    assert nn.get_partition_spec(variables) == specs  # rules do not change the logical spec
    assert nn.logical_to_mesh_axes(("embed", "mlp"), [("mlp", "model")]) == PartitionSpec(
        None, "model"
    )


def test_sharded_init_on_a_simulated_mesh():
    mesh = jax.make_mesh((2, 4), ("data", "model"))
    rules = [("embed", "data"), ("mlp", "model")]
    x = jnp.ones((4, 8))
    with nn.logical_axis_rules(rules):
        abstract = jax.eval_shape(Sharded().init, KEY, x)
        shardings = nn.get_sharding(abstract, mesh)
        variables = jax.jit(Sharded().init, out_shardings=shardings)(KEY, x)
    kernel = variables["params"]["kernel"].value
    assert kernel.sharding == NamedSharding(mesh, PartitionSpec("data", "model"))
    assert kernel.addressable_shards[0].data.shape == (4, 4)


def test_with_logical_constraint_places_values():
    mesh = jax.make_mesh((8,), ("data",))
    y = nn.with_logical_constraint(
        jnp.ones((8, 2)), ("batch", None), rules=[("batch", "data")], mesh=mesh
    )
    assert y.sharding.spec == PartitionSpec("data", None)
    same = jnp.ones(3)
    assert nn.with_logical_constraint(same, ("batch",)) is same  # no rules: no-op


def test_partitioned_axis_metadata_needs_a_partition_name():
    box = nn.Partitioned(jnp.ones((2, 3)), ("a", "b"))
    added = nn.meta.add_axis(box, 0, {nn.PARTITION_NAME: "layers"})
    assert added.names == ("layers", "a", "b")
    assert nn.meta.remove_axis(added, 0, {nn.PARTITION_NAME: "layers"}).names == ("a", "b")
    with pytest.raises(errors.LinenError, match="no mesh axis name was given"):
        nn.meta.add_axis(box, 0, {})
    with pytest.raises(errors.LinenError, match="Cannot remove axis 0 named 'a'"):
        nn.meta.remove_axis(box, 0, {nn.PARTITION_NAME: "layers"})


def test_variable_value_setter_keeps_the_box():
    class Stats(nn.Module):
        @nn.compact
        def __call__(self):
            v = self.variable(
                "stats", "m", nn.with_partitioning(jax.nn.initializers.zeros, ("data",)), KEY, (2,)
            )
            v.value = v.value + 1
            return v.value

    variables = Stats().init(KEY)
    box = variables["stats"]["m"]
    assert isinstance(box, nn.Partitioned) and box.names == ("data",)
    np.testing.assert_allclose(box.value, [1.0, 1.0])


def test_vmap_adds_partition_axis_to_boxes():
    class Layer(nn.Module):
        @nn.compact
        def __call__(self, x):
            w = self.param("w", nn.with_partitioning(jax.nn.initializers.ones, ("embed",)), (2,))
            return x * w

    Ensemble = nn.vmap(
        Layer,
        variable_axes={"params": 0},
        split_rngs={"params": True},
        in_axes=None,
        axis_size=4,
        metadata_params={nn.PARTITION_NAME: "ens"},
    )
    variables = Ensemble().init(KEY, jnp.ones(2))
    assert variables["params"]["w"].names == ("ens", "embed")
    assert Ensemble().apply(variables, jnp.ones(2)).shape == (4, 2)


def test_legacy_param_with_axes_and_get_axis_names():
    class Linear(nn.Module):
        @nn.compact
        def __call__(self, x):
            w = nn_partitioning.param_with_axes(
                "kernel", jax.nn.initializers.ones, (x.shape[-1], 4), axes=("embed", "mlp")
            )
            return x @ w

    variables = Linear().init(KEY, jnp.ones((1, 3)))
    assert nn_partitioning.get_axis_names(variables["params_axes"]) == {
        "kernel": PartitionSpec("embed", "mlp")
    }
    with pytest.raises(errors.LinenError, match="inside a module method"):
        nn_partitioning.param_with_axes("w", jax.nn.initializers.ones, (2,), axes=("a",))


def test_legacy_scan_with_axes_inserts_the_layer_axis():
    class Layer(nn.Module):
        @nn.compact
        def __call__(self, x, _):
            w = nn_partitioning.param_with_axes(
                "w", jax.nn.initializers.ones, (x.shape[-1],), axes=("embed",)
            )
            return x * w[None], None

    Stack = nn_partitioning.scan_with_axes(
        Layer, variable_axes={"params": 0}, split_rngs={"params": True}, length=3
    )
    variables = Stack().init(KEY, jnp.ones((1, 2)), None)
    assert variables["params"]["w"].shape == (3, 2)
    assert nn_partitioning.get_axis_names(variables["params_axes"]) == {
        "w": PartitionSpec("layers", "embed")
    }
