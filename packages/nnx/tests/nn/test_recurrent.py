"""Recurrent cells, RNN and Bidirectional against hand-written step math."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from plait import nnx


def _b(v, ndim):
    """``v`` with leading singleton axes up to ``ndim`` (explicit rank promotion)."""
    return v.reshape((1,) * (ndim - v.ndim) + v.shape)


def _close(a, b, tol=1e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


X = jax.random.normal(jax.random.key(0), (2, 4, 3))
sig, tanh = jax.nn.sigmoid, jnp.tanh


def _lin(layer, x):
    y = x @ layer.kernel[...]
    return y if layer.bias is None else y + _b(layer.bias[...], y.ndim)


def test_lstm_cell_step_and_param_layout():
    cell = nnx.LSTMCell(3, 4, rngs=nnx.Rngs(0))
    assert cell.ii.bias is None and cell.hi.bias.shape == (4,)
    assert cell.hi.kernel.shape == (4, 4) and cell.ii.kernel.shape == (3, 4)
    _close(cell.hi.kernel[...] @ cell.hi.kernel[...].T, jnp.eye(4), tol=1e-5)  # orthogonal
    c0, h0 = jax.random.normal(jax.random.key(1), (2, 2, 4))
    x = X[:, 0]
    (c, h), y = cell((c0, h0), x)
    i = sig(_lin(cell.ii, x) + _lin(cell.hi, h0))
    f = sig(_lin(cell.if_, x) + _lin(cell.hf, h0))
    g = tanh(_lin(cell.ig, x) + _lin(cell.hg, h0))
    o = sig(_lin(cell.io, x) + _lin(cell.ho, h0))
    want_c = f * c0 + i * g
    _close(c, want_c)
    _close(h, o * tanh(want_c))
    _close(y, h)


def test_optimized_lstm_cell_step():
    cell = nnx.OptimizedLSTMCell(3, 4, rngs=nnx.Rngs(0))
    c0, h0 = cell.initialize_carry((2, 3))
    assert (c0 == 0).all() and c0.shape == (2, 4)
    x = X[:, 0]
    z = _lin(cell.dense_i, x) + _lin(cell.dense_h, h0)
    i, f, g, o = jnp.split(z, 4, axis=-1)
    want_c = sig(f) * c0 + sig(i) * tanh(g)
    (c, h), _ = cell((c0, h0), x)
    _close(c, want_c)
    _close(h, sig(o) * tanh(want_c))


def test_gru_cell_step():
    cell = nnx.GRUCell(3, 4, rngs=nnx.Rngs(0))
    assert cell.dense_h.bias is None and cell.dense_i.bias.shape == (12,)
    h0 = jax.random.normal(jax.random.key(1), (2, 4))
    x = X[:, 0]
    xr, xz, xn = jnp.split(_lin(cell.dense_i, x), 3, axis=-1)
    hr, hz, hn = jnp.split(_lin(cell.dense_h, h0), 3, axis=-1)
    r, z = sig(xr + hr), sig(xz + hz)
    n = tanh(xn + r * hn)
    h, y = cell(h0, x)
    _close(h, (1 - z) * n + z * h0)
    _close(y, h)


def test_simple_cell_step_and_residual():
    cell = nnx.SimpleCell(3, 4, residual=True, rngs=nnx.Rngs(0))
    h0 = jax.random.normal(jax.random.key(1), (2, 4))
    x = X[:, 0]
    h, _ = cell(h0, x)
    _close(h, tanh(_lin(cell.dense_i, x) + _lin(cell.dense_h, h0) + h0))


def test_cell_input_check_and_carry_init():
    cell = nnx.GRUCell(3, 4, carry_init=nnx.initializers.ones, rngs=nnx.Rngs(0))
    assert (cell.initialize_carry((5, 3)) == 1).all()
    with pytest.raises(ValueError, match=r"GRUCell received `inputs` with shape \(2, 5\)"):
        cell(jnp.zeros((2, 4)), jnp.ones((2, 5)))
    random_init = nnx.GRUCell(3, 4, carry_init=nnx.initializers.normal(), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="needs a random key"):
        random_init.initialize_carry((2, 3))
    assert random_init.initialize_carry((2, 3), rngs=nnx.Rngs(carry=0)).shape == (2, 4)


def _python_loop(cell, xs, carry):
    ys = []
    for t in range(xs.shape[1]):
        carry, y = cell(carry, xs[:, t])
        ys.append(y)
    return carry, jnp.stack(ys, axis=1)


def test_rnn_matches_python_loop_and_time_major():
    cell = nnx.LSTMCell(3, 4, rngs=nnx.Rngs(0))
    rnn = nnx.RNN(cell)
    carry0 = cell.initialize_carry((2, 3))
    want_carry, want = _python_loop(cell, X, carry0)
    carry, out = rnn(X, return_carry=True)
    _close(out, want, tol=1e-5)
    _close(carry[1], want_carry[1], tol=1e-5)
    tm = nnx.RNN(cell, time_major=True)(jnp.swapaxes(X, 0, 1))
    _close(jnp.swapaxes(tm, 0, 1), want, tol=1e-5)


def test_rnn_reverse_keep_order_and_seq_lengths():
    cell = nnx.GRUCell(3, 4, rngs=nnx.Rngs(0))
    rnn = nnx.RNN(cell)
    carry0 = cell.initialize_carry((2, 3))
    _, rev = _python_loop(cell, X[:, ::-1], carry0)
    _close(rnn(X, reverse=True), rev, tol=1e-5)
    _close(rnn(X, reverse=True, keep_order=True), rev[:, ::-1], tol=1e-5)
    lengths = jnp.array([2, 4])
    carry, out = rnn(X, seq_lengths=lengths, return_carry=True)
    _close(carry[0], out[0, 1], tol=1e-6)  # last valid step of the first sequence
    _close(carry[1], out[1, 3], tol=1e-6)


def test_rnn_updates_cell_variables_carried_through_steps():
    class CountingCell(nnx.RNNCellBase):
        def __init__(self):
            self.in_features, self.hidden_features = 3, 3
            self.param_dtype = jnp.float32
            self.carry_init = nnx.initializers.zeros_init()
            self.rngs = None
            self.calls = nnx.BatchStat(jnp.zeros(()))

        def __call__(self, carry, x):
            self.calls[...] = self.calls[...] + 1
            return carry + x, carry + x

    cell = CountingCell()
    out = nnx.RNN(cell)(X)
    _close(out, jnp.cumsum(X, axis=1))
    assert float(cell.calls[...]) == 4.0


def test_rnn_gradients_flow_to_cell_params():
    rnn = nnx.RNN(nnx.SimpleCell(3, 4, rngs=nnx.Rngs(0)))
    grads = nnx.grad(lambda m: (m(X) ** 2).sum())(rnn)
    leaves = jax.tree_util.tree_leaves(grads)
    assert leaves and all(float(jnp.abs(g).sum()) > 0 for g in leaves)


def test_bidirectional_concatenates_forward_and_backward():
    fwd = nnx.RNN(nnx.GRUCell(3, 4, rngs=nnx.Rngs(0)))
    bwd = nnx.RNN(nnx.GRUCell(3, 4, rngs=nnx.Rngs(1)))
    bi = nnx.Bidirectional(fwd, bwd)
    out = bi(X)
    _close(out, jnp.concatenate([fwd(X), bwd(X, reverse=True, keep_order=True)], -1))
    (cf, cb), _ = bi(X, return_carry=True)
    assert cf.shape == cb.shape == (2, 4)


def test_flip_sequences_keeps_padding():
    from plait.nnx.nn._recurrent import flip_sequences

    x = jnp.array([[1, 0, 0], [2, 3, 0], [4, 5, 6]])
    out = flip_sequences(x, jnp.array([1, 2, 3]), 1, False)
    assert out.tolist() == [[1, 0, 0], [3, 2, 0], [6, 5, 4]]
