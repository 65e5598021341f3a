"""Training utilities: TrainState, common_utils, EarlyStopping, DynamicScale."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from plait import linen as nn
from plait.linen.training import common_utils, dynamic_scale, early_stopping, train_state


class Linear(nn.Module):
    @nn.compact
    def __call__(self, x):
        w = self.param("w", jax.nn.initializers.zeros, (x.shape[-1],))
        b = self.param("b", jax.nn.initializers.zeros, ())
        return x @ w + b


def test_train_state_fits_least_squares_solution():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype(np.float32)
    y = (x @ np.array([1.5, -2.0, 0.5]) + 0.3 + 0.1 * rng.normal(size=64)).astype(np.float32)
    model = Linear()
    state = train_state.TrainState.create(
        apply_fn=model.apply,
        params=model.init(jax.random.key(0), x)["params"],
        tx=optax.sgd(0.1),
    )

    def loss_fn(params):
        return jnp.mean((state.apply_fn({"params": params}, x) - y) ** 2)

    @jax.jit
    def train(state):
        def step(_, state):
            return state.apply_gradients(grads=jax.grad(loss_fn)(state.params))

        return jax.lax.fori_loop(0, 400, step, state)

    state = train(state)
    design = np.concatenate([x, np.ones((64, 1), np.float32)], axis=1)
    solution = np.linalg.lstsq(design, y, rcond=None)[0]
    np.testing.assert_allclose(state.params["w"], solution[:3], atol=1e-4)
    np.testing.assert_allclose(state.params["b"], solution[3], atol=1e-4)
    assert int(state.step) == 400


def test_train_state_is_a_pytree_with_static_fields_and_extra_fields():
    class StateWithStats(train_state.TrainState):
        batch_stats: dict

    state = StateWithStats.create(
        apply_fn=lambda *a: 0,
        params={"w": jnp.ones(2)},
        tx=optax.adam(1e-3),
        batch_stats={"m": jnp.zeros(2)},
    )
    leaves = jax.tree.leaves(state)
    assert all(isinstance(leaf, (jax.Array, int)) for leaf in leaves)
    new = state.apply_gradients(grads={"w": jnp.ones(2)}, batch_stats={"m": jnp.ones(2)})
    np.testing.assert_allclose(new.batch_stats["m"], [1.0, 1.0])
    assert new.tx is state.tx and int(new.step) == 1


def test_train_state_overwrite_with_gradient_collection():
    key = train_state.OVERWRITE_WITH_GRADIENT
    params = {"params": {"w": jnp.ones(2)}, key: {"scale": jnp.zeros(())}}
    state = train_state.TrainState.create(apply_fn=None, params=params, tx=optax.sgd(1.0))
    grads = {"params": {"w": jnp.ones(2)}, key: {"scale": jnp.full((), 7.0)}}
    new = state.apply_gradients(grads=grads)
    np.testing.assert_allclose(new.params["params"]["w"], [0.0, 0.0])
    assert float(new.params[key]["scale"]) == 7.0


def test_common_utils():
    n = jax.local_device_count()
    batch = {"x": np.arange(2 * n * 3).reshape(2 * n, 3)}
    sharded = common_utils.shard(batch)
    assert sharded["x"].shape == (n, 2, 3)
    assert common_utils.shard_prng_key(jax.random.key(0)).shape == (n,)
    np.testing.assert_array_equal(
        common_utils.onehot(jnp.array([[1, 0]]), 3, on_value=2.0, off_value=-1.0),
        [[[-1.0, 2.0, -1.0], [2.0, -1.0, -1.0]]],
    )
    stacked = common_utils.stack_forest([{"a": 1.0}, {"a": 2.0}, {"a": 3.0}])
    np.testing.assert_array_equal(stacked["a"], [1.0, 2.0, 3.0])
    per_step = [{"loss": np.full((n,), float(i))} for i in range(3)]
    np.testing.assert_array_equal(common_utils.get_metrics(per_step)["loss"], [0.0, 1.0, 2.0])


def test_early_stopping_counts_patience():
    es = early_stopping.EarlyStopping(min_delta=0.1, patience=2)
    history = []
    for metric in [1.0, 0.5, 0.45, 0.44, 0.43, 0.3]:
        es = es.update(metric)
        history.append((es.has_improved, es.patience_count, es.should_stop))
    assert history == [
        (True, 0, False),
        (True, 0, False),
        (False, 1, False),
        (False, 2, False),
        (False, 3, True),
        (True, 0, True),
    ]
    assert es.best_metric == 0.3
    reset = es.reset()
    assert reset.best_metric == float("inf") and not reset.should_stop and reset.patience == 2


@pytest.mark.parametrize("has_aux", [False, True])
def test_dynamic_scale_unscales_gradients(has_aux):
    def loss(w):
        value = jnp.sum(w**2)
        return (value, {"norm": value}) if has_aux else value

    ds = dynamic_scale.DynamicScale(growth_interval=1, scale=8.0)
    grad_fn = ds.value_and_grad(loss, has_aux=has_aux)
    w = jnp.array([1.0, -2.0])
    new_ds, finite, value, grad = grad_fn(w)
    np.testing.assert_allclose(grad, 2 * w)
    assert bool(finite) and float(value[0] if has_aux else value) == 5.0
    assert float(new_ds.scale) == 8.0 and int(new_ds.fin_steps) == 1
    grown, *_ = new_ds.value_and_grad(loss, has_aux=has_aux)(w)
    assert float(grown.scale) == 16.0 and int(grown.fin_steps) == 0


def test_dynamic_scale_backs_off_on_overflow():
    ds = dynamic_scale.DynamicScale(scale=4.0, minimum_scale=1.0)
    result = ds.value_and_grad(lambda w: jnp.sum(w) * jnp.inf)(jnp.ones(2))
    assert not bool(result.finite)
    assert float(result.dynamic_scale.scale) == 2.0
    again = result.dynamic_scale.replace(scale=1.5).value_and_grad(lambda w: jnp.sum(w) * jnp.inf)(
        jnp.ones(2)
    )
    assert float(again.dynamic_scale.scale) == 1.0
