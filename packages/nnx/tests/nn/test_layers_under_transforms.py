"""Layers inside nnx.jit / nnx.grad: state updates are written back, gradients flow."""

import jax
import jax.numpy as jnp
import numpy as np
from plait import nnx


def _close(a, b, tol=1e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


class Block(nnx.Module):
    def __init__(self, rngs):
        self.conv = nnx.Conv(3, 4, 3, rngs=rngs)
        self.bn = nnx.BatchNorm(4, rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=rngs)
        self.head = nnx.Linear(4, 2, rngs=rngs)

    def __call__(self, x):
        return self.head(self.drop(nnx.relu(self.bn(self.conv(x)))).mean(1))


X = jax.random.normal(jax.random.key(0), (4, 6, 3))


def test_jit_train_step_updates_batch_stats_and_params():
    model = Block(nnx.Rngs(0))
    eager_copy = Block(nnx.Rngs(0))

    @nnx.jit
    def step(model, x):
        loss, grads = nnx.value_and_grad(lambda m: (m(x) ** 2).mean())(model)
        return loss, grads

    loss, grads = step(model, X)
    assert float(jnp.abs(model.bn.mean[...]).sum()) > 0  # running mean written back
    eager_copy(X)
    _close(model.bn.mean[...], eager_copy.bn.mean[...], tol=1e-5)
    conv_grad = grads["conv"]["kernel"]
    assert conv_grad.shape == (3, 3, 4) and float(jnp.abs(conv_grad[...]).sum()) > 0
    model.eval()
    out = nnx.jit(lambda m, x: m(x))(model, X)
    assert out.shape == (4, 2)


def test_mha_decode_under_jit_matches_eager():
    def build():
        m = nnx.MultiHeadAttention(2, 8, decode=True, rngs=nnx.Rngs(0))
        m.init_cache((1, 3, 8))
        return m

    eager, jitted = build(), build()
    decode = nnx.jit(lambda m, x: m(x))
    xs = jax.random.normal(jax.random.key(1), (1, 3, 8))
    for t in range(3):
        _close(decode(jitted, xs[:, t : t + 1]), eager(xs[:, t : t + 1]), tol=1e-5)
    assert int(jitted.cache_index[...]) == 3


def test_rnn_under_jit_matches_eager():
    rnn = nnx.RNN(nnx.OptimizedLSTMCell(3, 4, rngs=nnx.Rngs(0)))
    _close(nnx.jit(lambda m, x: m(x))(rnn, X), rnn(X), tol=1e-5)
