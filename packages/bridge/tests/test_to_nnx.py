"""ToNNX: Linen modules used as NNX modules."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from plait import bridge, nnx
from plait import linen as nn


def _data():
    x = jax.random.normal(jax.random.key(1), (8, 3))
    y = jax.random.normal(jax.random.key(2), (8, 2))
    return x, y


def _mse(pred, y):
    return jnp.mean((pred - y) ** 2)


def test_lazy_init_creates_typed_variables_as_attributes():
    model = bridge.ToNNX(nn.Dense(2), rngs=nnx.Rngs(0)).lazy_init(jnp.ones((1, 3)))
    assert type(model.kernel) is nnx.Param and model.kernel.shape == (3, 2)
    params = nnx.state(model, nnx.Param)
    assert jax.tree.map(jnp.shape, nnx.to_pure_dict(params)) == {"bias": (2,), "kernel": (3, 2)}


def test_variables_equal_linen_init_with_the_same_key():
    x = jnp.ones((1, 3))
    model = bridge.ToNNX(nn.Dense(2), rngs=nnx.Rngs(params=7)).lazy_init(x)
    # ToNNX draws one key per stream per call: the first draw of stream 'params'.
    key = nnx.Rngs(params=7).params()
    expected = nn.Dense(2).init({"params": key}, x)["params"]
    np.testing.assert_array_equal(model.kernel[...], expected["kernel"])
    np.testing.assert_array_equal(model.bias[...], expected["bias"])


def test_first_call_initializes_without_lazy_init():
    model = bridge.ToNNX(nn.Dense(4), rngs=nnx.Rngs(0))
    assert model(jnp.ones((2, 5))).shape == (2, 4)
    assert model.kernel.shape == (5, 4)


def test_training_with_nnx_optimizer_and_jit_matches_pure_linen_and_optax():
    x, y = _data()
    key = nnx.Rngs(params=0).params()
    linen_model = nn.Dense(2)

    model = bridge.ToNNX(linen_model, rngs=nnx.Rngs(params=0)).lazy_init(x)
    optimizer = nnx.Optimizer(model, optax.adam(0.1), wrt=nnx.Param)

    @nnx.jit
    def nnx_step(model, optimizer, x, y):
        loss, grads = nnx.value_and_grad(lambda m: _mse(m(x), y))(model)
        optimizer.update(model, grads)
        return loss

    params = linen_model.init({"params": key}, x)["params"]
    tx = optax.adam(0.1)
    opt_state = tx.init(params)

    @jax.jit
    def linen_step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(lambda p: _mse(linen_model.apply({"params": p}, x), y))(
            params
        )
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    for _ in range(4):
        nnx_loss = nnx_step(model, optimizer, x, y)
        params, opt_state, linen_loss = linen_step(params, opt_state, x, y)
        np.testing.assert_allclose(nnx_loss, linen_loss, rtol=1e-6)
    np.testing.assert_allclose(model.kernel[...], params["kernel"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.bias[...], params["bias"], rtol=1e-5, atol=1e-6)


class _ConvBN(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = True):
        x = nn.Dense(3)(x)
        return nn.BatchNorm(use_running_average=not train, momentum=0.5)(x)


def test_batch_stats_are_updated_in_place_and_match_linen():
    x, _ = _data()
    model = bridge.ToNNX(_ConvBN(), rngs=nnx.Rngs(0)).lazy_init(x)
    variables = bridge.variables.nnx_attrs_to_linen_vars(
        {name: getattr(model, name) for name in model.linen_attributes}
    )
    mean_variable = model.BatchNorm_0["mean"]
    assert type(mean_variable) is nnx.BatchStat

    out = model(x * 3.0, mutable=["batch_stats"])
    expected_out, updates = _ConvBN().apply(variables, x * 3.0, mutable=["batch_stats"])

    np.testing.assert_allclose(out, expected_out, rtol=1e-6)
    assert model.BatchNorm_0["mean"] is mean_variable  # the same Variable, new value
    np.testing.assert_allclose(
        mean_variable[...], updates["batch_stats"]["BatchNorm_0"]["mean"], rtol=1e-6
    )
    assert not np.allclose(mean_variable[...], 0.0)


def test_batch_stats_update_inside_nnx_jit():
    x, _ = _data()
    model = bridge.ToNNX(_ConvBN(), rngs=nnx.Rngs(0)).lazy_init(x)
    before = np.asarray(model.BatchNorm_0["var"][...])

    @nnx.jit
    def train_forward(model, x):
        return model(x, mutable=["batch_stats"])

    train_forward(model, x * 2.0)
    assert not np.allclose(model.BatchNorm_0["var"][...], before)
    eval_out = model(x, train=False)
    assert eval_out.shape == (8, 3)


def test_writing_an_immutable_collection_names_the_fix():
    x, _ = _data()
    model = bridge.ToNNX(_ConvBN(), rngs=nnx.Rngs(0)).lazy_init(x)
    with pytest.raises(
        bridge.MutabilityError,
        match=r"(?s)batch_stats.*Fix: call it with `mutable=\['batch_stats'\]`",
    ):
        model(x)


def test_dropout_keys_come_from_the_nnx_rngs_dropout_stream():
    x = jnp.ones((4, 16))
    model = bridge.ToNNX(nn.Dropout(0.5, deterministic=False), rngs=nnx.Rngs(params=0, dropout=3))
    first = model(x)  # initializes: a Dropout has no variables, the output is a real draw
    second = model(x)

    reference_rngs = nnx.Rngs(dropout=3)
    expected_first = nn.Dropout(0.5, deterministic=False).apply(
        {}, x, rngs={"dropout": reference_rngs.dropout()}
    )
    expected_second = nn.Dropout(0.5, deterministic=False).apply(
        {}, x, rngs={"dropout": reference_rngs.dropout()}
    )
    np.testing.assert_array_equal(first, expected_first)
    np.testing.assert_array_equal(second, expected_second)
    assert not np.array_equal(first, second)


def test_dropout_stream_advances_under_nnx_jit():
    x = jnp.ones((4, 16))
    model = bridge.ToNNX(nn.Dropout(0.5, deterministic=False), rngs=nnx.Rngs(0, dropout=1))
    model.lazy_init(x)
    call = nnx.jit(lambda m, x: m(x))
    a, b = call(model, x), call(model, x)
    assert not np.array_equal(a, b)
    # RNGs passed to the call replace the wrapper's own for that call.
    override = model(x, rngs=nnx.Rngs(dropout=5))
    expected = nn.Dropout(0.5, deterministic=False).apply(
        {}, x, rngs={"dropout": nnx.Rngs(dropout=5).dropout()}
    )
    np.testing.assert_array_equal(override, expected)


class _Counter(nn.Module):
    @nn.compact
    def __call__(self, x):
        count = self.variable("counter", "count", lambda: jnp.zeros((), jnp.int32))
        if not self.is_initializing():
            count.value += 1
        self.sow("intermediates", "doubled", x * 2)
        return x


def test_custom_collections_and_sow_become_registered_variable_types():
    model = bridge.ToNNX(_Counter()).lazy_init(jnp.ones(2))
    assert type(model.count) is nnx.variable_type_from_name("counter")
    model(jnp.ones(2), mutable=True)
    model(jnp.ones(2), mutable=True)
    assert int(model.count[...]) == 2
    assert isinstance(model.doubled, nnx.Intermediate)
    assert "doubled" in model.linen_attributes


def test_linen_methods_are_forwarded_and_lazy_init_accepts_them():
    class Twice(nn.Module):
        def setup(self):
            self.dense = nn.Dense(3)

        def __call__(self, x):
            return self.dense(x)

        def twice(self, x):
            return self.dense(self.dense(x))

    model = bridge.ToNNX(Twice(), rngs=nnx.Rngs(0))
    bridge.lazy_init(model.twice, jnp.ones((1, 3)))
    x = jnp.ones((2, 3))
    np.testing.assert_allclose(model.twice(x), model(model(x)), rtol=1e-6)


def test_lazy_init_reinitializes_every_reached_wrapper():
    model = bridge.ToNNX(nn.Dense(2), rngs=nnx.Rngs(0)).lazy_init(jnp.ones((1, 3)))
    bridge.lazy_init(model, jnp.ones((1, 5)))
    assert model.kernel.shape == (5, 2)


def test_nested_linen_submodules_are_dict_attributes():
    class Two(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = nn.Dense(4)(x)
            return nn.Dense(2)(h)

    model = bridge.ToNNX(Two(), rngs=nnx.Rngs(0)).lazy_init(jnp.ones((1, 3)))
    shapes = jax.tree.map(jnp.shape, nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    assert shapes == {
        "Dense_0": {"bias": (4,), "kernel": (3, 4)},
        "Dense_1": {"bias": (2,), "kernel": (4, 2)},
    }
    graphdef, state = nnx.split(model)
    rebuilt = nnx.merge(graphdef, state)
    np.testing.assert_array_equal(rebuilt(jnp.ones((1, 3))), model(jnp.ones((1, 3))))


def test_inside_an_nnx_module_with_jit_and_grad():
    class Model(nnx.Module):
        def __init__(self, rngs):
            self.encoder = bridge.ToNNX(nn.Dense(4), rngs=rngs)
            self.head = nnx.Linear(4, 1, rngs=rngs)

        def __call__(self, x):
            return self.head(jax.nn.relu(self.encoder(x)))

    x = jnp.ones((3, 2))
    model = bridge.lazy_init(Model(nnx.Rngs(0)), x)
    grads = nnx.jit(nnx.grad(lambda m: jnp.sum(m(x))))(model)
    assert grads["encoder"]["kernel"][...].shape == (2, 4)


# -- misuse -----------------------------------------------------------------------------


def test_reading_variables_before_initialization_explains_the_fix():
    model = bridge.ToNNX(nn.Dense(3), rngs=nnx.Rngs(0))
    assert not hasattr(model, "kernel")
    with pytest.raises(
        bridge.NotInitializedError,
        match=r"(?s)wrapping Dense\(features=3\) has no attribute 'kernel' yet.*Fix: .*lazy_init\(x\)",
    ):
        _ = model.kernel


def test_calling_before_init_without_an_input_names_the_path_and_the_fix():
    class Model(nnx.Module):
        def __init__(self):
            self.encoder = bridge.ToNNX(nn.Dense(3), rngs=nnx.Rngs(0))

        def __call__(self):
            return self.encoder()

    with pytest.raises(
        bridge.InitializationError, match=r"(?s)Model\.encoder \(ToNNX\).*Fix: pass a sample input"
    ):
        Model()()


def test_initializing_without_rngs_explains_where_to_put_them():
    with pytest.raises(
        bridge.InitializationError, match=r"(?s)needs an RNG.*Fix: .*rngs=nnx\.Rngs\(0\)"
    ):
        bridge.ToNNX(nn.Dense(3)).lazy_init(jnp.ones((1, 2)))


def test_lazy_init_rejects_plain_functions():
    with pytest.raises(bridge.InitializationError, match="expects an NNX Module or a bound method"):
        bridge.lazy_init(lambda x: x, 1.0)


def test_linen_names_clashing_with_wrapper_attributes_are_rejected():
    class Clash(nn.Module):
        @nn.compact
        def __call__(self, x):
            return x * self.param("module", nn.initializers.ones, ())

    with pytest.raises(bridge.VariableLayoutError, match=r"(?s)named 'module'.*Fix: rename"):
        bridge.ToNNX(Clash(), rngs=nnx.Rngs(0)).lazy_init(jnp.ones(2))
