import jax
import jax.numpy as jnp
import numpy as np
import pytest
from plait import linen as nn

KEY = jax.random.key(0)


def broadcasting():
    """Hand-written references broadcast like NumPy; the layers run under 'raise'."""
    return jax.numpy_rank_promotion("allow")


def rand(shape, seed=1):
    return jax.random.normal(jax.random.key(seed), shape)


def randomize(variables, seed=5):
    leaves, tree = jax.tree.flatten(variables)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree.unflatten(
        tree, [jax.random.normal(k, x.shape) * 0.5 for k, x in zip(keys, leaves, strict=True)]
    )


def _dense(p, x):
    y = x @ p["kernel"]
    return y + p["bias"] if "bias" in p else y


def dense(*args, **kwargs):
    with broadcasting():
        return _dense(*args, **kwargs)


def lstm_step(p, carry, x):
    c, h = carry
    i = jax.nn.sigmoid(dense(p["ii"], x) + dense(p["hi"], h))
    f = jax.nn.sigmoid(dense(p["if"], x) + dense(p["hf"], h))
    g = jnp.tanh(dense(p["ig"], x) + dense(p["hg"], h))
    o = jax.nn.sigmoid(dense(p["io"], x) + dense(p["ho"], h))
    c = f * c + i * g
    h = o * jnp.tanh(c)
    return (c, h), h


def test_lstm_cell_matches_equations():
    cell = nn.LSTMCell(features=4)
    x = rand((2, 3))
    carry = (rand((2, 4), 2), rand((2, 4), 3))
    variables = randomize(cell.init(KEY, carry, x))
    p = variables["params"]
    assert jax.tree.map(jnp.shape, p["ii"]) == {"kernel": (3, 4)}
    assert jax.tree.map(jnp.shape, p["hi"]) == {"kernel": (4, 4), "bias": (4,)}
    (c, h), y = cell.apply(variables, carry, x)
    (c_ref, h_ref), _ = lstm_step(p, carry, x)
    np.testing.assert_allclose(c, c_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h, h_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(y, h)


def test_lstm_default_inits_and_carry():
    cell = nn.LSTMCell(features=3)
    carry = cell.initialize_carry(KEY, (2, 5))
    assert jax.tree.map(jnp.shape, carry) == ((2, 3), (2, 3))
    np.testing.assert_array_equal(carry[0], np.zeros((2, 3)))
    params = cell.init(KEY, carry, jnp.ones((2, 5)))["params"]
    np.testing.assert_array_equal(params["hf"]["bias"], np.zeros(3))
    # The recurrent kernels are orthogonal.
    k = params["hg"]["kernel"]
    np.testing.assert_allclose(k @ k.T, np.eye(3), atol=1e-5)


def test_optimized_lstm_is_interchangeable_with_lstm():
    x = rand((2, 3))
    carry = (rand((2, 4), 2), rand((2, 4), 3))
    variables = randomize(nn.LSTMCell(4).init(KEY, carry, x))
    opt_variables = nn.OptimizedLSTMCell(4).init(KEY, carry, x)
    assert jax.tree.map(jnp.shape, opt_variables) == jax.tree.map(jnp.shape, variables)
    expected = nn.LSTMCell(4).apply(variables, carry, x)
    got = nn.OptimizedLSTMCell(4).apply(variables, carry, x)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), got, expected)


def test_gru_cell_matches_equations():
    cell = nn.GRUCell(features=4)
    x, h = rand((2, 3)), rand((2, 4), 2)
    variables = randomize(cell.init(KEY, h, x))
    p = variables["params"]
    assert "bias" not in p["hr"] and "bias" in p["hn"] and "bias" in p["ir"]
    r = jax.nn.sigmoid(dense(p["ir"], x) + dense(p["hr"], h))
    z = jax.nn.sigmoid(dense(p["iz"], x) + dense(p["hz"], h))
    n = jnp.tanh(dense(p["in"], x) + r * dense(p["hn"], h))
    expected = (1 - z) * n + z * h
    new_h, y = cell.apply(variables, h, x)
    np.testing.assert_allclose(new_h, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(y, new_h)


@pytest.mark.parametrize("reset_gate", [True, False])
def test_mgu_cell_matches_equations(reset_gate):
    cell = nn.MGUCell(features=4, reset_gate=reset_gate)
    x, h = rand((2, 3)), rand((2, 4), 2)
    init_params = cell.init(KEY, h, x)["params"]
    np.testing.assert_array_equal(init_params["if"]["bias"], np.ones(4))
    variables = randomize({"params": init_params})
    p = variables["params"]
    f = jax.nn.sigmoid(dense(p["if"], x) + dense(p["hf"], h))
    hidden = dense(p["hn"], h) * f if reset_gate else dense(p["hn"], h)
    n = jnp.tanh(dense(p["in"], x) + hidden)
    expected = (1 - f) * n + f * h
    np.testing.assert_allclose(cell.apply(variables, h, x)[0], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("residual", [False, True])
def test_simple_cell_matches_equations(residual):
    cell = nn.SimpleCell(features=4, residual=residual)
    x, h = rand((2, 3)), rand((2, 4), 2)
    variables = randomize(cell.init(KEY, h, x))
    p = variables["params"]
    pre = dense(p["i"], x) + dense(p["h"], h) + (h if residual else 0.0)
    np.testing.assert_allclose(cell.apply(variables, h, x)[0], jnp.tanh(pre), rtol=1e-5, atol=1e-6)


def test_conv_lstm_cell_matches_equations():
    cell = nn.ConvLSTMCell(features=2, kernel_size=(3,))
    x = rand((1, 5, 3))
    carry = (rand((1, 5, 2), 2), rand((1, 5, 2), 3))
    variables = randomize(cell.init(KEY, carry, x))
    p = variables["params"]
    conv = nn.Conv(8, (3,))
    gates = conv.apply({"params": p["ih"]}, x) + conv.apply({"params": p["hh"]}, carry[1])
    i, g, f, o = jnp.split(gates, 4, axis=-1)
    c = jax.nn.sigmoid(f + 1) * carry[0] + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    (c_out, h_out), _ = cell.apply(variables, carry, x)
    np.testing.assert_allclose(c_out, c, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h_out, h, rtol=1e-5, atol=1e-6)
    assert cell.num_feature_axes == 2


def test_cell_rejects_a_carry_of_the_wrong_width():
    cell = nn.GRUCell(features=4)
    x = jnp.ones((2, 3))
    with pytest.raises(
        ValueError, match=r"GRUCell.*carry has shape \(2, 5\).*need \(2, 4\).*initialize_carry"
    ):
        cell.init(KEY, jnp.ones((2, 5)), x)


def loop(cell_params, step, carry, xs, time_axis=1):
    ys = []
    for t in range(xs.shape[time_axis]):
        carry, y = step(cell_params, carry, jnp.take(xs, t, axis=time_axis))
        ys.append(y)
    return carry, jnp.stack(ys, axis=time_axis)


def test_rnn_equals_a_python_loop_over_the_cell():
    rnn = nn.RNN(nn.LSTMCell(4), return_carry=True)
    x = rand((2, 5, 3))
    variables = randomize(rnn.init(KEY, x))
    p = variables["params"]["cell"]
    carry, ys = rnn.apply(variables, x)
    zeros = (jnp.zeros((2, 4)), jnp.zeros((2, 4)))
    carry_ref, ys_ref = loop(p, lstm_step, zeros, x)
    np.testing.assert_allclose(ys, ys_ref, rtol=1e-5, atol=1e-6)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), carry, carry_ref
    )


def test_rnn_time_major_and_reverse():
    x = rand((5, 2, 3))
    rnn = nn.RNN(nn.LSTMCell(4), time_major=True)
    variables = randomize(rnn.init(KEY, x))
    p = variables["params"]["cell"]
    zeros = (jnp.zeros((2, 4)), jnp.zeros((2, 4)))
    _, ys_ref = loop(p, lstm_step, zeros, x, time_axis=0)
    np.testing.assert_allclose(rnn.apply(variables, x), ys_ref, rtol=1e-5, atol=1e-6)
    _, rev_ref = loop(p, lstm_step, zeros, x[::-1], time_axis=0)
    np.testing.assert_allclose(rnn.apply(variables, x, reverse=True), rev_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        rnn.apply(variables, x, reverse=True, keep_order=True), rev_ref[::-1], rtol=1e-5, atol=1e-6
    )


def test_rnn_seq_lengths_return_each_sequences_last_carry():
    rnn = nn.RNN(nn.GRUCell(3))
    x = rand((2, 4, 2))
    variables = randomize(rnn.init(KEY, x))
    p = variables["params"]["cell"]
    lengths = jnp.array([2, 4])
    carry, ys = rnn.apply(variables, x, seq_lengths=lengths, return_carry=True)

    def gru_step(p, h, x):
        out = nn.GRUCell(3).apply({"params": p}, h, x)
        return out

    for b, n in enumerate([2, 4]):
        h_ref, _ = loop(p, gru_step, jnp.zeros((1, 3)), x[b : b + 1, :n])
        np.testing.assert_allclose(carry[b], h_ref[0], rtol=1e-5, atol=1e-6)
    assert ys.shape == (2, 4, 3)


def test_rnn_initial_carry_and_missing_time_axis():
    rnn = nn.RNN(nn.SimpleCell(2))
    x = rand((1, 3, 2))
    variables = rnn.init(KEY, x)
    h0 = jnp.ones((1, 2))
    carry, _ = rnn.apply(variables, x, initial_carry=h0, return_carry=True)
    ref = h0
    for t in range(3):
        ref, _ = nn.SimpleCell(2).apply({"params": variables["params"]["cell"]}, ref, x[:, t])
    np.testing.assert_allclose(carry, ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"RNN.*have no time axis.*rank >= 2"):
        rnn.apply(variables, jnp.ones((2,)))


def test_flip_sequences_keeps_padding_at_the_end():
    x = jnp.array([[1, 0, 0], [2, 3, 0], [4, 5, 6]])
    out = nn.recurrent.flip_sequences(x, jnp.array([1, 2, 3]), num_batch_dims=1, time_major=False)
    assert out.tolist() == [[1, 0, 0], [3, 2, 0], [6, 5, 4]]
    assert nn.recurrent.flip_sequences(x, None, 1, False).tolist() == [
        [0, 0, 1],
        [0, 3, 2],
        [6, 5, 4],
    ]


def test_bidirectional_concatenates_forward_and_aligned_backward():
    layer = nn.Bidirectional(nn.RNN(nn.GRUCell(3)), nn.RNN(nn.GRUCell(3)), return_carry=True)
    x = rand((2, 4, 2))
    variables = randomize(layer.init(KEY, x))
    p = variables["params"]
    assert set(p) == {"forward_rnn", "backward_rnn"}
    (carry_f, carry_b), out = layer.apply(variables, x)
    assert out.shape == (2, 4, 6)
    forward = nn.RNN(nn.GRUCell(3)).apply({"params": p["forward_rnn"]}, x)
    backward = nn.RNN(nn.GRUCell(3)).apply(
        {"params": p["backward_rnn"]}, x, reverse=True, keep_order=True
    )
    np.testing.assert_allclose(out, jnp.concatenate([forward, backward], -1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(carry_b, backward[:, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(carry_f, forward[:, -1], rtol=1e-5, atol=1e-6)
