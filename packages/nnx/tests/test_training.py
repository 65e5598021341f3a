"""Optimizer, metrics and EMA, checked against pure JAX / optax / NumPy references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from plait import nnx


class Dense(nnx.Module):
    def __init__(self, din, dout, *, rngs: nnx.Rngs):
        self.w = nnx.Param(jax.random.normal(rngs.params(), (din, dout)) / np.sqrt(din))
        self.b = nnx.Param(jnp.zeros((dout,)))

    def __call__(self, x):
        y = x @ self.w
        return y + jnp.broadcast_to(self.b[...], y.shape)


class MLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.hidden = Dense(3, 8, rngs=rngs)
        self.out = Dense(8, 1, rngs=rngs)

    def __call__(self, x):
        return self.out(jax.nn.tanh(self.hidden(x)))


def pure_mlp(params, x):
    h = jnp.tanh(x @ params["hidden"]["w"] + params["hidden"]["b"][None])
    return h @ params["out"]["w"] + params["out"]["b"][None]


def data():
    x = jax.random.normal(jax.random.key(1), (16, 3))
    y = jnp.sin(x.sum(axis=1, keepdims=True))
    return x, y


def test_training_matches_pure_jax_and_optax():
    x, y = data()
    model = MLP(nnx.Rngs(0))
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))  # same start
    tx = optax.adam(0.05)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

    @nnx.jit
    def train_step(model, optimizer, x, y):
        def loss_fn(model):
            return jnp.mean((model(x) - y) ** 2)

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    @jax.jit
    def pure_step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(lambda p: jnp.mean((pure_mlp(p, x) - y) ** 2))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    opt_state = tx.init(params)
    losses, pure_losses = [], []
    for _ in range(8):
        losses.append(float(train_step(model, optimizer, x, y)))
        params, opt_state, loss = pure_step(params, opt_state, x, y)
        pure_losses.append(float(loss))

    np.testing.assert_allclose(losses, pure_losses, rtol=1e-5)
    assert losses[-1] < 0.5 * losses[0]
    final = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), final, params)
    assert int(optimizer.step[...]) == 8
    assert optimizer.step[...].dtype == jnp.uint32
    # optax state lives in OptState Variables: adam's count advanced with the steps
    counts = [
        v for _, v in nnx.iter_graph(optimizer.opt_state) if isinstance(v, nnx.OptState)
        and v[...].dtype == jnp.int32 and v[...].ndim == 0
    ]
    assert counts and all(int(c[...]) == 8 for c in counts)


def test_optimizer_wrt_subset_and_errors():
    model = MLP(nnx.Rngs(0))
    out_only = nnx.All(nnx.Param, nnx.PathContains("out"))
    optimizer = nnx.Optimizer(model, optax.sgd(1.0), wrt=out_only)
    hidden_before = model.hidden.w[...]
    grads = jax.tree.map(jnp.ones_like, nnx.state(model, nnx.Param))
    updates = optimizer.update(model, grads)  # extra (hidden) grads are ignored
    np.testing.assert_array_equal(model.hidden.w[...], hidden_before)
    np.testing.assert_allclose(updates["out"]["b"], -np.ones(1))
    with pytest.raises(ValueError, match=r"no gradient for 2 optimized Variable\(s\): out/b, out/w"):
        optimizer.update(model, nnx.state(model, nnx.PathContains("hidden")))
    with pytest.raises(AttributeError, match=r"Optimizer does not keep the model"):
        _ = optimizer.model
    with pytest.raises(ValueError, match=r"found no Variables to optimize in MLP"):
        nnx.Optimizer(model, optax.sgd(1.0), wrt=nnx.BatchStat)


def test_model_and_optimizer_keeps_the_model():
    model = MLP(nnx.Rngs(0))
    pair = nnx.ModelAndOptimizer(model, optax.sgd(0.1))
    assert pair.model is model
    grads = nnx.grad(lambda m: m(jnp.ones((2, 3))).sum())(model)
    before = model.out.b[...]
    pair.update(grads)
    np.testing.assert_allclose(model.out.b[...], before - 0.1 * 2.0, rtol=1e-6)


def test_average_and_masks():
    avg = nnx.metrics.Average()
    avg.update(values=jnp.array([1.0, 2.0, 3.0]))
    avg.update(values=jnp.array([10.0, 20.0]), mask=jnp.array([True, False]))
    assert float(avg.compute()) == pytest.approx((1 + 2 + 3 + 10) / 4)
    avg.reset()
    avg.update(values=4.0)
    assert float(avg.compute()) == 4.0
    with pytest.raises(TypeError, match=r"Average.update\(\) needs the keyword argument 'values', got \['loss'\]"):
        avg.update(loss=1.0)


def test_accuracy_matches_numpy():
    logits = jax.random.normal(jax.random.key(0), (20, 5))
    labels = jax.random.randint(jax.random.key(1), (20,), 0, 5)
    acc = nnx.metrics.Accuracy()
    acc.update(logits=logits[:10], labels=labels[:10])
    acc.update(logits=logits[10:], labels=labels[10:])
    expected = np.mean(np.argmax(np.asarray(logits), -1) == np.asarray(labels))
    assert float(acc.compute()) == pytest.approx(expected)
    binary = nnx.metrics.Accuracy(threshold=0.0)
    binary.update(logits=jnp.array([-1.0, 2.0, 0.5]), labels=jnp.array([0, 1, 0]))
    assert float(binary.compute()) == pytest.approx(2 / 3)
    with pytest.raises(TypeError, match="need one more axis"):
        acc.update(logits=logits, labels=logits)
    with pytest.raises(TypeError, match="labels must be integer class ids"):
        acc.update(logits=logits, labels=labels.astype(jnp.float32))


def test_welford_matches_numpy():
    values = np.asarray(jax.random.normal(jax.random.key(2), (30,))) * 3 + 1
    w = nnx.metrics.Welford()
    for chunk in np.split(values, [7, 19]):
        w.update(values=jnp.asarray(chunk))
    stats = w.compute()
    assert float(stats.mean) == pytest.approx(values.mean(), rel=1e-5)
    assert float(stats.standard_deviation) == pytest.approx(values.std(), rel=1e-5)
    assert float(stats.standard_error_of_mean) == pytest.approx(values.std() / np.sqrt(30), rel=1e-5)


def test_multimetric_and_metrics_inside_jit():
    metrics = nnx.MultiMetric(accuracy=nnx.metrics.Accuracy(), loss=nnx.metrics.Average("loss"))

    @nnx.jit
    def step(metrics, logits, labels, loss):
        metrics.update(logits=logits, labels=labels, loss=loss)

    step(metrics, jnp.array([[0.0, 1.0], [1.0, 0.0]]), jnp.array([1, 1]), jnp.array(2.0))
    step(metrics, jnp.array([[0.0, 1.0]]), jnp.array([1]), jnp.array(4.0))
    result = metrics.compute()
    assert float(result["accuracy"]) == pytest.approx(2 / 3)
    assert float(result["loss"]) == pytest.approx(3.0)
    metrics.reset()
    assert int(metrics.loss.count[...]) == 0
    with pytest.raises(TypeError, match=r"MultiMetric\(bad=...\) got int"):
        nnx.MultiMetric(bad=3)


def test_ema_tracks_float_variables():
    model = MLP(nnx.Rngs(0))
    ema = nnx.EMA(model, decay=0.9)
    ema_model = ema.apply_to(model)
    assert ema_model.out.w is ema.params["out"]["w"]
    start = model.out.w[...]
    model.out.w[...] = start + 1.0
    ema.update(model)
    np.testing.assert_allclose(ema_model.out.w[...], start + 0.1, rtol=1e-6)
    np.testing.assert_allclose(model.out.w[...], start + 1.0)  # the model is untouched


def test_train_state_functional_api():
    model = MLP(nnx.Rngs(0))
    graphdef, params = nnx.split(model)
    ts = nnx.TrainState.create(graphdef, params=params, tx=optax.sgd(0.1))
    x, y = data()
    (out, _) = ts.apply("params")(x)
    np.testing.assert_allclose(out, model(x), rtol=1e-6)

    def loss(params):
        return jnp.mean((nnx.merge(graphdef, params)(x) - y) ** 2)

    grads = jax.grad(loss)(ts.params)
    new = ts.apply_gradients(grads)
    assert int(new.step) == 1 and loss(new.params) < loss(ts.params)


def test_optimizer_state_keeps_parameter_sharding_metadata():
    class Sharded(nnx.Module):
        def __init__(self):
            self.w = nnx.Param(jnp.ones((4, 2)), sharding_names=("embed", "mlp"))

    optimizer = nnx.Optimizer(Sharded(), optax.adam(1e-3))
    mu = optimizer.opt_state[0].mu["w"]
    assert type(mu).__name__ == "OptVariable"
    assert mu.get_metadata()["sharding_names"] == ("embed", "mlp")
    assert type(optimizer.opt_state[0].count).__name__ == "OptArray"
    specs = nnx.get_partition_spec(nnx.state(optimizer))
    assert specs["opt_state"][0]["mu"]["w"].get_value() == jax.sharding.PartitionSpec("embed", "mlp")
