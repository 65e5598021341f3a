"""Module system: init/apply, setup vs compact, naming, sharing, binding, errors."""

import dataclasses
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from plait import linen as nn
from plait.linen import errors

KEY = jax.random.key(0)


class Dense(nn.Module):
    features: int
    use_bias: bool = True

    @nn.compact
    def __call__(self, x):
        kernel = self.param(
            "kernel", jax.nn.initializers.lecun_normal(), (x.shape[-1], self.features)
        )
        y = x @ kernel
        if self.use_bias:
            bias = self.param("bias", jax.nn.initializers.normal(1.0), (self.features,))
            y = y + bias.reshape((1,) * (y.ndim - 1) + (-1,))
        return y


class CompactMLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = jax.nn.relu(Dense(4)(x))
        return Dense(2)(x)


class SetupMLP(nn.Module):
    def setup(self):
        self.hidden = Dense(4)
        self.out = Dense(2)

    def __call__(self, x):
        return self.out(jax.nn.relu(self.hidden(x)))


def shapes(tree):
    return jax.tree.map(jnp.shape, tree)


def test_init_apply_round_trip_matches_hand_computation():
    x = jnp.arange(6.0).reshape(2, 3)
    variables = Dense(2).init(KEY, x)
    assert type(variables) is dict and type(variables["params"]) is dict
    assert shapes(variables) == {"params": {"bias": (2,), "kernel": (3, 2)}}
    p = variables["params"]
    np.testing.assert_allclose(Dense(2).apply(variables, x), x @ p["kernel"] + p["bias"][None])


def test_init_with_output_returns_output_and_variables():
    x = jnp.ones((1, 3))
    y, variables = Dense(2).init_with_output(KEY, x)
    np.testing.assert_allclose(y, Dense(2).apply(variables, x))


def test_setup_and_compact_give_same_structure_and_output():
    x = jnp.ones((2, 3))
    compact_vars = CompactMLP().init(KEY, x)
    setup_vars = SetupMLP().init(KEY, x)
    assert shapes(compact_vars) == {
        "params": {
            "Dense_0": {"bias": (4,), "kernel": (3, 4)},
            "Dense_1": {"bias": (2,), "kernel": (4, 2)},
        }
    }
    renamed = {
        "params": {
            "hidden": compact_vars["params"]["Dense_0"],
            "out": compact_vars["params"]["Dense_1"],
        }
    }
    assert shapes(setup_vars) == shapes(renamed)
    np.testing.assert_allclose(SetupMLP().apply(renamed, x), CompactMLP().apply(compact_vars, x))


def test_naming_rules_explicit_names_lists_and_dicts():
    class Named(nn.Module):
        def setup(self):
            self.layers = [Dense(2), Dense(3)]
            self.heads = {"a": Dense(1)}

        @nn.compact
        def __call__(self, x):
            y = Dense(5, name="custom")(x)
            z = Dense(5)(x)
            return self.layers[1](self.layers[0](y + z)), self.heads["a"](x)

    variables = Named().init(KEY, jnp.ones((1, 3)))
    assert sorted(variables["params"]) == ["Dense_0", "custom", "heads_a", "layers_0", "layers_1"]


def test_shared_submodule_shares_parameters():
    class Shared(nn.Module):
        @nn.compact
        def __call__(self, x):
            dense = Dense(3)
            return dense(dense(x))

    x = jnp.ones((1, 3))
    variables = Shared().init(KEY, x)
    assert list(variables["params"]) == ["Dense_0"]
    p = variables["params"]["Dense_0"]
    once = x @ p["kernel"] + p["bias"][None]
    np.testing.assert_allclose(
        Shared().apply(variables, x), once @ p["kernel"] + p["bias"][None], rtol=1e-6
    )


def test_compact_method_called_twice_reuses_the_same_submodules():
    class Twice(nn.Module):
        @nn.compact
        def __call__(self, x):
            return Dense(3)(x)

    class Outer(nn.Module):
        def setup(self):
            self.inner = Twice()

        def __call__(self, x):
            return self.inner(x) + self.inner(x)

    variables = Outer().init(KEY, jnp.ones((1, 3)))
    assert shapes(variables) == {"params": {"inner": {"Dense_0": {"bias": (3,), "kernel": (3, 3)}}}}


def test_sequential_owns_modules_passed_from_outside():
    model = nn.Sequential([Dense(3), jax.nn.relu, Dense(2)])
    x = jnp.ones((1, 4))
    variables = model.init(KEY, x)
    assert sorted(variables["params"]) == ["layers_0", "layers_2"]
    p0, p2 = variables["params"]["layers_0"], variables["params"]["layers_2"]
    expected = jax.nn.relu(x @ p0["kernel"] + p0["bias"][None]) @ p2["kernel"] + p2["bias"][None]
    np.testing.assert_allclose(model.apply(variables, x), expected, rtol=1e-6)


def test_sequential_rejects_non_sequence_and_empty():
    with pytest.raises(errors.LinenError, match="must be a sequence"):
        nn.Sequential(Dense(2))
    with pytest.raises(errors.LinenError, match="has no layers"):
        nn.Sequential([]).init(KEY, jnp.ones(2))


def test_dataclass_fields_and_signature_put_parent_and_name_last():
    assert [f.name for f in dataclasses.fields(Dense)] == ["features", "use_bias", "parent", "name"]
    params = list(inspect.signature(Dense).parameters)
    assert params == ["features", "use_bias", "parent", "name"]

    class Sub(Dense):
        extra: int = 0

    assert [f.name for f in dataclasses.fields(Sub)][-2:] == ["parent", "name"]


def test_reserved_field_names_are_rejected():
    with pytest.raises(errors.ReservedModuleAttributeError, match="reserved"):

        class Bad(nn.Module):
            name: str = "x"


def test_multiple_compact_methods_are_rejected():
    with pytest.raises(errors.MultipleMethodsCompactError, match="Only one method"):

        class Bad(nn.Module):
            @nn.compact
            def a(self):
                pass

            @nn.compact
            def b(self):
                pass


def test_module_is_frozen_outside_setup():
    module = Dense(2)
    with pytest.raises(errors.SetAttributeFrozenModuleError, match="frozen outside setup"):
        module.features = 3


def test_setup_cannot_reassign_fields():
    class Bad(nn.Module):
        features: int = 1

        def setup(self):
            self.features = 2

        def __call__(self, x):
            return x

    with pytest.raises(errors.SetAttributeInModuleSetupError, match="dataclass field"):
        Bad().init(KEY, 1.0)


def test_submodule_outside_setup_or_compact_is_rejected():
    class Bad(nn.Module):
        def __call__(self, x):
            return Dense(2)(x)

    with pytest.raises(errors.AssignSubModuleError, match="setup\\(\\) or in a method wrapped"):
        Bad().init(KEY, jnp.ones((1, 2)))


def test_param_outside_setup_or_compact_is_rejected():
    class Bad(nn.Module):
        def __call__(self, x):
            return self.param("w", jax.nn.initializers.ones, ())

    with pytest.raises(errors.InitializationNotAllowedError, match="must be created in setup"):
        Bad().init(KEY, 1.0)


def test_duplicate_names_raise_name_in_use():
    class Dup(nn.Module):
        @nn.compact
        def __call__(self, x):
            Dense(2, name="a")(x)
            return Dense(2, name="a")(x)

    with pytest.raises(errors.NameInUseError, match='submodule "a"'):
        Dup().init(KEY, jnp.ones((1, 2)))

    class DupParam(nn.Module):
        @nn.compact
        def __call__(self, x):
            self.param("w", jax.nn.initializers.ones, ())
            return self.param("w", jax.nn.initializers.ones, ())

    with pytest.raises(errors.NameInUseError, match='param "w"'):
        DupParam().init(KEY, 1.0)


def test_compact_method_on_unbound_module_is_rejected():
    with pytest.raises(
        errors.CallCompactUnboundModuleError, match="Dense.__call__ of an unbound module"
    ):
        Dense(2)(jnp.ones((1, 2)))


def test_setup_attribute_on_unbound_module_has_a_hint():
    with pytest.raises(AttributeError, match="setup\\(\\) only runs on a bound module"):
        _ = SetupMLP().hidden


def test_param_shape_mismatch_names_path_and_shapes():
    variables = CompactMLP().init(KEY, jnp.ones((1, 3)))
    with pytest.raises(
        errors.ScopeParamShapeError, match=r'"kernel" in module "/Dense_0".*\(3, 4\).*\(5, 4\)'
    ):
        CompactMLP().apply(variables, jnp.ones((1, 5)))


def test_missing_param_and_collection_errors():
    with pytest.raises(errors.ScopeParamNotFoundError, match='No parameter named "bias"'):
        Dense(2).apply({"params": {"kernel": jnp.ones((3, 2))}}, jnp.ones((1, 3)))
    with pytest.raises(errors.ScopeCollectionNotFound, match='no "params" collection'):
        Dense(2).apply({}, jnp.ones((1, 3)))


def test_invalid_variables_arguments():
    with pytest.raises(errors.ApplyScopeInvalidVariablesTypeError, match="mapping of collections"):
        Dense(2).apply(jnp.ones(3), jnp.ones((1, 3)))
    with pytest.raises(errors.ApplyScopeInvalidVariablesStructureError, match="'params' holds"):
        Dense(2).apply({"params": jnp.ones(3)}, jnp.ones((1, 3)))


def test_invalid_method_argument():
    with pytest.raises(errors.ApplyModuleInvalidMethodError, match="Dense.missing"):
        Dense(2).apply({"params": {}}, jnp.ones((1, 3)), method="missing")


def test_writing_an_immutable_collection_is_rejected():
    class Counter(nn.Module):
        @nn.compact
        def __call__(self):
            count = self.variable("counter", "n", lambda: jnp.zeros((), jnp.int32))
            count.value += 1
            return count.value

    variables = Counter().init(KEY)
    assert int(variables["counter"]["n"]) == 1
    with pytest.raises(errors.ModifyScopeVariableError, match='collection "counter" is immutable'):
        Counter().apply(variables)
    out, updated = Counter().apply(variables, mutable=["counter"])
    assert int(out) == 2 and int(updated["counter"]["n"]) == 2
    assert int(variables["counter"]["n"]) == 1  # the caller's dict is untouched


def test_mutable_batch_stats_running_average():
    class RunningMean(nn.Module):
        momentum: float = 0.5

        @nn.compact
        def __call__(self, x, train):
            mean = self.variable("batch_stats", "mean", jnp.zeros, x.shape[-1:])
            if train and not self.is_initializing():
                mean.value = self.momentum * mean.value + (1 - self.momentum) * x.mean(0)
            return x - mean.value[None]

    x = jnp.array([[1.0, 3.0], [3.0, 5.0]])
    variables = RunningMean().init(KEY, x, train=True)
    np.testing.assert_allclose(variables["batch_stats"]["mean"], [0.0, 0.0])
    _, updated = RunningMean().apply(variables, x, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(updated["batch_stats"]["mean"], [1.0, 2.0])
    y = RunningMean().apply({**variables, **updated}, x, train=False)
    np.testing.assert_allclose(y, x - jnp.array([[1.0, 2.0]]))


def test_sow_and_capture_intermediates():
    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = Dense(3)(x)
            self.sow("intermediates", "h", h)
            self.sow("intermediates", "h", 2 * h)
            self.sow("stats", "total", h.sum(), reduce_fn=lambda a, b: a + b, init_fn=lambda: 0.0)
            return h

    x = jnp.ones((1, 2))
    variables = Model().init(KEY, x)
    assert "intermediates" not in variables and "stats" in variables
    variables = {"params": variables["params"]}
    y, state = Model().apply(variables, x, mutable=["intermediates", "stats"])
    h1, h2 = state["intermediates"]["h"]
    np.testing.assert_allclose(h2, 2 * h1)
    np.testing.assert_allclose(state["stats"]["total"], y.sum())
    _, captured = Model().apply(variables, x, capture_intermediates=True, mutable=["intermediates"])
    np.testing.assert_allclose(captured["intermediates"]["__call__"][0], y)
    np.testing.assert_allclose(captured["intermediates"]["Dense_0"]["__call__"][0], y)
    only_dense = lambda module, method: isinstance(module, Dense)
    _, filtered = Model().apply(
        variables, x, capture_intermediates=only_dense, mutable=["intermediates"]
    )
    assert "__call__" not in filtered["intermediates"]
    assert Model().apply(variables, x) is not None  # sow is a no-op when immutable


def test_perturb_gives_gradients_of_intermediates():
    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = self.perturb("h", 3.0 * x)
            return (h**2).sum()

    x = jnp.array([1.0, 2.0])
    variables = Model().init(KEY, x)
    np.testing.assert_allclose(variables["perturbations"]["h"], [0.0, 0.0])
    grads = jax.grad(lambda p: Model().apply({"perturbations": p}, x))(variables["perturbations"])
    np.testing.assert_allclose(grads["h"], 2 * 3.0 * x)
    assert float(Model().apply({}, x)) == pytest.approx(float(((3 * x) ** 2).sum()))


def test_make_rng_is_deterministic_and_distinct():
    class Draws(nn.Module):
        @nn.compact
        def __call__(self):
            return jnp.stack([jax.random.key_data(self.make_rng("dropout")) for _ in range(2)])

    class Two(nn.Module):
        @nn.compact
        def __call__(self):
            return Draws()(), Draws()()

    rngs = {"dropout": jax.random.key(1)}
    (a1, b1) = Two().apply({}, rngs=rngs)
    (a2, b2) = Two().apply({}, rngs=rngs)
    np.testing.assert_array_equal(a1, a2)  # same seed, same path: same keys
    assert not np.array_equal(a1[0], a1[1])  # successive draws differ
    assert not np.array_equal(a1, b1)  # different paths differ
    (c, _) = Two().apply({}, rngs={"dropout": jax.random.key(2)})
    assert not np.array_equal(a1, c)


def test_make_rng_falls_back_to_params_and_errors_without_streams():
    class Draw(nn.Module):
        @nn.compact
        def __call__(self):
            return self.make_rng("dropout")

    assert Draw().init_with_output(KEY)[0] is not None
    with pytest.raises(errors.InvalidRngError, match='needs an RNG for stream "dropout"'):
        Draw().apply({})
    with pytest.raises(errors.InvalidRngError, match="must be a PRNG key"):
        Draw().apply({}, rngs={"dropout": 1.5})


def test_bind_unbind_variables_and_path():
    x = jnp.ones((1, 3))
    variables = SetupMLP().init(KEY, x)
    bound = SetupMLP().bind(variables)
    np.testing.assert_allclose(bound(x), SetupMLP().apply(variables, x))
    assert bound.hidden.path == ("hidden",)
    assert shapes(bound.hidden.variables) == {"params": {"bias": (4,), "kernel": (3, 4)}}
    unbound, unbound_vars = bound.unbind()
    assert unbound.scope is None and shapes(unbound_vars) == shapes(variables)
    with pytest.raises(errors.CallUnbindOnUnboundModuleError, match="not bound"):
        SetupMLP().unbind()
    with pytest.raises(errors.UnboundModuleError, match="access variables"):
        _ = SetupMLP().variables


def test_bound_module_from_a_finished_apply_is_invalid():
    leaked = []

    class Leak(nn.Module):
        @nn.compact
        def __call__(self, x):
            leaked.append(self)
            return x

    Leak().apply({}, 1.0)
    with pytest.raises(errors.InvalidScopeError, match="no longer valid"):
        _ = leaked[0].variables


def test_clone_copy_and_repr():
    module = Dense(2, name="d")
    assert module.clone(features=5).features == 5 and module.clone().name == "d"
    assert repr(Dense(2)) == "Dense(features=2, use_bias=True)"

    class Copier(nn.Module):
        @nn.compact
        def __call__(self, x):
            first = Dense(2)
            return first(x) + first.copy()(x)

    assert sorted(Copier().init(KEY, jnp.ones((1, 2)))["params"]) == ["Dense_0", "Dense_1"]


def test_method_argument_and_functional_apply():
    class Two(nn.Module):
        @nn.compact
        def __call__(self, x):
            return Dense(2, name="d")(x)

        def double(self, x):
            return 2 * self(x)

    x = jnp.ones((1, 3))
    variables = Two().init(KEY, x)
    y = Two().apply(variables, x)
    np.testing.assert_allclose(Two().apply(variables, x, method="double"), 2 * y)
    np.testing.assert_allclose(Two().apply(variables, x, method=Two.double), 2 * y)
    f = nn.apply(lambda m, x: m(x) + 1, Two())
    np.testing.assert_allclose(f(variables, x), y + 1)
    v2 = nn.init(lambda m, x: m.double(x), Two())(KEY, x)
    assert shapes(v2) == shapes(variables)


def test_lazy_init_from_shapes():
    x = jax.ShapeDtypeStruct((4, 3), jnp.float32)
    variables = CompactMLP().lazy_init(KEY, x)
    eager = CompactMLP().init(KEY, jnp.ones((4, 3)))
    jax.tree.map(np.testing.assert_allclose, variables, eager)


def test_share_scope_and_compact_name_scope():
    class Wrapper(nn.Module):
        def setup(self):
            self.inner = Dense(2)
            nn.share_scope(self, self.inner)

        @nn.compact
        def __call__(self, x):
            return self.inner(x) * self.param("gain", jax.nn.initializers.ones, ())

    assert sorted(Wrapper().init(KEY, jnp.ones((1, 2)))["params"]) == ["bias", "gain", "kernel"]

    class AutoEncoder(nn.Module):
        @nn.compact_name_scope
        def encode(self, x):
            return Dense(2)(x)

        @nn.compact_name_scope
        def decode(self, x):
            return Dense(3)(x)

        def __call__(self, x):
            return self.decode(self.encode(x))

    variables = AutoEncoder().init(KEY, jnp.ones((1, 3)))
    assert shapes(variables["params"]) == {
        "decode": {"Dense_0": {"bias": (3,), "kernel": (2, 3)}},
        "encode": {"Dense_0": {"bias": (2,), "kernel": (3, 2)}},
    }


def test_intercept_methods_sees_every_call_and_can_change_outputs():
    seen = []

    def record(next_fun, args, kwargs, context):
        seen.append((type(context.module).__name__, context.method_name))
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(record):
        CompactMLP().init(KEY, jnp.ones((1, 2)))
    assert seen == [("CompactMLP", "__call__"), ("Dense", "__call__"), ("Dense", "__call__")]

    def zero_dense(next_fun, args, kwargs, context):
        y = next_fun(*args, **kwargs)
        return jnp.zeros_like(y) if isinstance(context.module, Dense) else y

    variables = CompactMLP().init(KEY, jnp.ones((1, 2)))
    with nn.intercept_methods(zero_dense):
        np.testing.assert_allclose(CompactMLP().apply(variables, jnp.ones((1, 2))), 0.0)


def test_nowrap_methods_skip_setup():
    class Model(nn.Module):
        features: int = 3

        def setup(self):
            raise AssertionError("setup must not run")

        @nn.nowrap
        def width(self):
            return 2 * self.features

    assert Model().width() == 6


def test_merge_param():
    assert nn.merge_param("train", True, None) is True
    with pytest.raises(ValueError, match="must be passed to the constructor or at call time"):
        nn.merge_param("train", None, None)
    with pytest.raises(ValueError, match="both to the constructor"):
        nn.merge_param("train", True, False)


def test_variable_handle_and_has_get_put():
    class Model(nn.Module):
        @nn.compact
        def __call__(self):
            v = self.variable("cache", "k", jnp.zeros, (2,))
            assert self.has_variable("cache", "k") and not self.has_variable("cache", "q")
            assert v.is_mutable() == self.is_mutable_collection("cache")
            if self.is_mutable_collection("cache"):
                self.put_variable("cache", "k", self.get_variable("cache", "k") + 1)
            return v.value

    variables = Model().init(KEY)
    np.testing.assert_allclose(variables["cache"]["k"], [1.0, 1.0])
    np.testing.assert_allclose(Model().apply(variables), [1.0, 1.0])


def test_collections_map_to_core_variable_types():
    from plait.core import BatchStat, Param

    assert nn.collection_type("params") is Param
    assert nn.collection_type("batch_stats") is BatchStat
    typed = nn.to_typed_variables({"params": {"w": jnp.ones(2)}, "counters": {"n": 1}})
    assert type(typed["params"]["w"]) is Param
    assert type(typed["counters"]["n"]) is nn.collection_type("counters")
    plain = nn.from_typed_variables(typed)
    np.testing.assert_allclose(plain["params"]["w"], jnp.ones(2))
    assert plain["counters"]["n"] == 1


def test_properties_trigger_setup():
    class WithProperty(nn.Module):
        def setup(self):
            self.dense = Dense(2)

        @property
        def width(self):
            return self.dense.features

        def __call__(self, x):
            return self.dense(x)

    variables = WithProperty().init(KEY, jnp.ones((1, 2)))
    assert WithProperty().bind(variables).width == 2


def test_apply_under_jax_jit_and_grad():
    x = jnp.ones((2, 3))
    variables = CompactMLP().init(KEY, x)

    @jax.jit
    def loss(params):
        return (CompactMLP().apply({"params": params}, x) ** 2).sum()

    grads = jax.grad(loss)(variables["params"])
    assert shapes(grads) == shapes(variables["params"])


def test_make_rng_uses_plait_core_stream_derivation():
    from plait.core import RngStream

    class Draws(nn.Module):
        def __call__(self):
            return [jax.random.key_data(self.make_rng("dropout")) for _ in range(3)]

    root_key = jax.random.key(7)
    draws = Draws().apply({}, rngs={"dropout": root_key})
    stream = RngStream(root_key, tag="dropout")
    for drawn in draws:
        np.testing.assert_array_equal(drawn, jax.random.key_data(stream()))
