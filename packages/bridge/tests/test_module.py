"""bridge.Module: NNX modules written Linen-style."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from plait import bridge, nnx
from plait import linen as nn


class Dense(bridge.Module):
    features: int

    @bridge.compact
    def __call__(self, x):
        kernel = self.param("kernel", nnx.initializers.lecun_normal(), (x.shape[-1], self.features))
        bias = self.param("bias", nnx.initializers.zeros, (self.features,))
        return x @ kernel + bias[None]


class MLP(bridge.Module):
    hidden: int = 4

    @bridge.compact
    def __call__(self, x):
        h = jax.nn.relu(Dense(self.hidden)(x))
        return Dense(2, name="out")(h)


def test_compact_names_and_init_shapes():
    variables = MLP().init(0, jnp.ones((1, 3)))
    assert jax.tree.map(jnp.shape, variables) == {
        "params": {
            "Dense_0": {"bias": (4,), "kernel": (3, 4)},
            "out": {"bias": (2,), "kernel": (4, 2)},
        }
    }


def test_apply_uses_the_given_variables():
    x = jax.random.normal(jax.random.key(0), (5, 3))
    variables = MLP().init(1, x)
    p = variables["params"]
    hidden = jax.nn.relu(x @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"][None])
    expected = hidden @ p["out"]["kernel"] + p["out"]["bias"][None]
    np.testing.assert_allclose(MLP().apply(variables, x), expected, rtol=1e-5)
    doubled = jax.tree.map(lambda v: 2 * v, variables)
    assert not np.allclose(MLP().apply(doubled, x), expected)


def test_init_is_deterministic_in_the_rng():
    x = jnp.ones((1, 3))
    a, b, c = MLP().init(0, x), MLP().init(0, x), MLP().init(1, x)
    np.testing.assert_array_equal(a["params"]["out"]["kernel"], b["params"]["out"]["kernel"])
    assert not np.allclose(a["params"]["out"]["kernel"], c["params"]["out"]["kernel"])


def test_setup_style_and_custom_collections_with_mutable():
    class Counter(bridge.Module):
        def setup(self):
            self.dense = Dense(3)

        def __call__(self, x):
            count = self.variable("counter", "count", jnp.zeros, (), jnp.int32)
            if not self.is_initializing():
                count.value += 1
            return self.dense(x)

    x = jnp.ones((2, 2))
    variables = Counter().init(0, x)
    assert sorted(variables) == ["counter", "params"]
    assert jax.tree.map(jnp.shape, variables["params"]) == {
        "dense": {"bias": (3,), "kernel": (2, 3)}
    }
    _, updates = Counter().apply(variables, x, mutable=["counter"])
    assert sorted(updates) == ["counter"] and int(updates["counter"]["count"]) == 1


def test_rerunning_a_compact_method_reuses_its_submodules():
    seen = []

    class Twice(bridge.Module):
        @bridge.compact
        def __call__(self, x):
            return self.block(self.block(x))

        def block(self, x):
            layer = Dense(x.shape[-1], name="shared")
            seen.append(layer)
            return layer(x)

    variables = Twice().init(0, jnp.ones((1, 3)))
    assert list(variables["params"]) == ["shared"]
    assert seen[0] is seen[1]


def test_linen_and_nnx_submodules_inside_a_bridge_module():
    class Hybrid(bridge.Module):
        @bridge.compact
        def __call__(self, x, train: bool):
            x = bridge.linen_in_bridge_mdl(nn.Dense(4))(x)
            x = bridge.linen_in_bridge_mdl(nn.BatchNorm(use_running_average=not train))(x)
            x = bridge.linen_in_bridge_mdl(nn.Dropout(0.5, deterministic=True))(x)
            return bridge.nnx_in_bridge_mdl(lambda r: nnx.Linear(4, 2, rngs=r))(x)

    x = jax.random.normal(jax.random.key(2), (6, 3))
    variables = Hybrid().init(0, x, train=False)
    assert jax.tree.map(jnp.shape, variables) == {
        "batch_stats": {"BatchNorm_0": {"mean": (4,), "var": (4,)}},
        "params": {
            "BatchNorm_0": {"bias": (4,), "scale": (4,)},
            "Dense_0": {"bias": (4,), "kernel": (3, 4)},
            "Linear_0": {"bias": (2,), "kernel": (4, 2)},
        },
    }
    p = variables["params"]
    hidden = x @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"][None]
    normed = hidden / jnp.sqrt(1.0 + 1e-5)  # running stats: mean 0, var 1; scale 1, bias 0
    expected = normed @ p["Linear_0"]["kernel"] + p["Linear_0"]["bias"][None]
    np.testing.assert_allclose(
        Hybrid().apply(variables, x, train=False), expected, rtol=1e-5, atol=1e-6
    )

    # ToNNX inherits `mutable` from the bridge scope: batch_stats update.
    _, updates = Hybrid().apply(variables, x, train=True, mutable=["batch_stats"])
    assert not np.allclose(updates["batch_stats"]["BatchNorm_0"]["mean"], 0.0)


def test_partitioned_param_keeps_its_metadata():
    class Sharded(bridge.Module):
        @bridge.compact
        def __call__(self, x):
            init = bridge.with_partitioning(nnx.initializers.ones, ("in", "out"))
            return x @ self.param("w", init, (x.shape[-1], 2))

    variables = Sharded().init(0, jnp.ones((1, 3)))
    box = variables["params"]["w"]
    assert isinstance(
        box, bridge.NNXMeta
    ) and box.get_partition_spec() == jax.sharding.PartitionSpec("in", "out")
    np.testing.assert_array_equal(Sharded().apply(variables, jnp.ones((1, 3))), [[3.0, 3.0]])


def test_make_rng_draws_from_the_scope_streams():
    class Noise(bridge.Module):
        def __call__(self, x):
            return x + jax.random.normal(self.make_rng("noise"), x.shape)

    x = jnp.zeros(3)
    a = Noise().apply({}, x, rngs={"noise": 0})
    b = Noise().apply({}, x, rngs={"noise": 1})
    expected = jax.random.normal(nnx.Rngs(noise=0).noise(), (3,))
    np.testing.assert_array_equal(a, expected)
    assert not np.allclose(a, b)


def test_params_outside_init_or_apply_explain_the_fix():
    with pytest.raises(
        bridge.BridgeError,
        match=r"(?s)Dense\.param\(\) needs the module to be bound.*Fix: call `model\.init",
    ):
        Dense(2)(jnp.ones((1, 3)))


def test_type_mismatch_names_the_attribute():
    class Bad(bridge.Module):
        @bridge.compact
        def __call__(self):
            self.variable("counter", "n", jnp.zeros, ())
            return self.param("n", nnx.initializers.zeros, ())

    with pytest.raises(
        bridge.BridgeError, match=r"(?s)attribute 'n' holds a Counter.*expects a Param"
    ):
        Bad().init(0)


def test_nnx_in_bridge_mdl_needs_a_running_bridge_module():
    with pytest.raises(
        bridge.BridgeError, match=r"(?s)no bound bridge\.Module method is running.*Fix"
    ):
        bridge.nnx_in_bridge_mdl(lambda r: nnx.Linear(1, 1, rngs=r))


def test_context_helpers():
    seen = {}

    class Probe(bridge.Module):
        @bridge.compact
        def __call__(self):
            seen["module"] = bridge.current_module()
            seen["compact"] = bridge.current_context().in_compact

    module = Probe()
    module.apply({})
    assert isinstance(seen["module"], Probe) and seen["module"] is not module  # a bound clone
    assert seen["compact"] is True
    assert bridge.current_module() is None
