"""Linen's lifted transforms run on plait.core's lifting engine.

Each test checks that the core transform is the one doing the work (a spy on
``plait.core.<transform>``), and compares the results with hand-computed or pure-JAX
references.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from plait import core
from plait import linen as nn

KEY = jax.random.key(0)


@pytest.fixture
def engine_calls(monkeypatch):
    """Counts calls of plait.core's transforms made by Linen."""
    calls: dict[str, int] = {}
    names = ["vmap", "scan", "jit", "remat", "switch", "while_loop", "vjp", "jvp",
             "value_and_grad", "custom_vjp"]
    for name in names:
        original = getattr(core, name)

        def spy(*args, _name=name, _original=original, **kwargs):
            calls[_name] = calls.get(_name, 0) + 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(core, name, spy)
    return calls


class Scale(nn.Module):
    """``x * w + b`` with ``w`` partitioned as ('embed',)."""

    @nn.compact
    def __call__(self, x):
        w = self.param("w", nn.with_partitioning(jax.nn.initializers.normal(1.0), ("embed",)),
                       (x.shape[-1],))
        b = self.param("b", jax.nn.initializers.zeros, (x.shape[-1],))
        return x * w + b


def test_vmap_metadata_axis_comes_from_the_engine_hook(engine_calls):
    Ensemble = nn.vmap(
        Scale, variable_axes={"params": 0}, split_rngs={"params": True}, in_axes=None,
        axis_size=3, metadata_params={nn.PARTITION_NAME: "ens"},
    )
    x = jnp.array([1.0, 2.0])
    variables = Ensemble().init(KEY, x)
    assert engine_calls["vmap"] == 1
    box = variables["params"]["w"]
    assert isinstance(box, nn.Partitioned)
    assert box.names == ("ens", "embed")
    assert box.value.shape == (3, 2)
    assert variables["params"]["b"].shape == (3, 2)
    assert not np.allclose(box.value[0], box.value[1])  # one key per member
    y = Ensemble().apply(variables, x)
    assert engine_calls["vmap"] == 2
    np.testing.assert_allclose(y, box.value * x[None] + variables["params"]["b"], rtol=1e-6)
    # Hand-computed: with w = [[1, 2], [3, 4], [5, 6]] and b = 0 the members give x * w.
    hand = {"params": {"w": box.replace_boxed(jnp.array([[1.0, 2], [3, 4], [5, 6]])),
                       "b": jnp.zeros((3, 2))}}
    np.testing.assert_allclose(Ensemble().apply(hand, x), [[1, 4], [3, 8], [5, 12]])


def test_vmap_metadata_axis_at_a_nonzero_axis():
    Batched = nn.vmap(
        Scale, variable_axes={"params": 1}, split_rngs={"params": True}, in_axes=0, out_axes=0,
        metadata_params={nn.PARTITION_NAME: "batch"},
    )
    x = jnp.ones((4, 2))
    variables = Batched().init(KEY, x)
    assert variables["params"]["w"].names == ("embed", "batch")
    assert variables["params"]["w"].value.shape == (2, 4)
    expected = jax.vmap(lambda w, b, xi: xi * w + b, in_axes=(1, 1, 0))(
        variables["params"]["w"].value, variables["params"]["b"], x
    )
    np.testing.assert_allclose(Batched().apply(variables, x), expected, rtol=1e-6)


def test_vmap_updates_existing_state_and_creates_new_collections(engine_calls):
    class Counter(nn.Module):
        @nn.compact
        def __call__(self, x):
            total = self.variable("stats", "total", lambda: jnp.zeros(()))
            total.value = total.value + x.sum()
            self.sow("intermediates", "x2", x * 2)
            return x

    V = nn.vmap(Counter, variable_axes={"stats": 0, "intermediates": 0},
                split_rngs={}, in_axes=0)
    x = jnp.arange(6.0).reshape(3, 2)
    variables = V().init(KEY, x)
    np.testing.assert_allclose(variables["stats"]["total"], [1.0, 5.0, 9.0])
    # apply: 'stats' exists (updated in place by the engine), 'intermediates' is created
    # inside and leaves through out_axes.
    _, state = V().apply({"stats": variables["stats"]}, x,
                         mutable=["stats", "intermediates"])
    np.testing.assert_allclose(state["stats"]["total"], [2.0, 10.0, 18.0])
    np.testing.assert_allclose(state["intermediates"]["x2"][0], 2 * x)
    assert engine_calls["vmap"] == 2


class Cell(nn.Module):
    @nn.compact
    def __call__(self, c, x):
        w = self.param("w", nn.with_partitioning(jax.nn.initializers.normal(1.0), ("embed",)),
                       (c.shape[-1],))
        c = jnp.tanh(c * w + x)
        return c, 2 * c


def test_scan_creates_stacked_params_inside_the_loop(engine_calls):
    Stack = nn.scan(
        Cell, variable_axes={"params": 0}, split_rngs={"params": True}, length=None,
        metadata_params={nn.PARTITION_NAME: "layers"},
    )
    xs = jnp.arange(8.0).reshape(4, 2) / 10
    c0 = jnp.ones(2)
    variables = Stack().init(KEY, c0, xs)
    assert engine_calls["scan"] == 1
    w = variables["params"]["w"]
    assert w.names == ("layers", "embed")
    assert w.value.shape == (4, 2)
    assert not np.allclose(w.value[0], w.value[1])
    (c, ys) = Stack().apply(variables, c0, xs)

    def step(c, wx):
        wi, xi = wx
        c = jnp.tanh(c * wi + xi)
        return c, 2 * c

    c_ref, ys_ref = jax.lax.scan(step, c0, (w.value, xs))
    np.testing.assert_allclose(c, c_ref, rtol=1e-6)
    np.testing.assert_allclose(ys, ys_ref, rtol=1e-6)


def test_scan_broadcast_params_created_in_the_first_step(engine_calls):
    Loop = nn.scan(Cell, variable_broadcast="params", split_rngs={"params": False})
    xs = jnp.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]])
    c0 = jnp.array([0.5, -0.5])
    variables = Loop().init(KEY, c0, xs)
    w = variables["params"]["w"].value
    assert w.shape == (2,)
    c, ys = Loop().apply(variables, c0, xs)
    # Hand-unrolled reference.
    ref_c, ref_ys = c0, []
    for x in xs:
        ref_c = jnp.tanh(ref_c * w + x)
        ref_ys.append(2 * ref_c)
    np.testing.assert_allclose(c, ref_c, rtol=1e-6)
    np.testing.assert_allclose(ys, jnp.stack(ref_ys), rtol=1e-6)
    assert engine_calls["scan"] == 2


def test_scan_carry_variables_threaded_by_the_engine():
    class Acc(nn.Module):
        @nn.compact
        def __call__(self, c, x):
            total = self.variable("state", "total", lambda: jnp.zeros(()))
            total.value = total.value + x
            return c + total.value, total.value

    Loop = nn.scan(Acc, variable_carry="state", split_rngs={})
    xs = jnp.array([1.0, 2.0, 3.0, 4.0])
    variables = Loop().init(KEY, 0.0, xs)
    (c, ys), state = Loop().apply({"state": {"total": jnp.array(10.0)}}, 0.0, xs,
                                  mutable=["state"])
    # running totals 11, 13, 16, 20; the carry sums them
    np.testing.assert_allclose(ys, [11.0, 13.0, 16.0, 20.0])
    np.testing.assert_allclose(c, 60.0)
    np.testing.assert_allclose(state["state"]["total"], 20.0)
    np.testing.assert_allclose(variables["state"]["total"], 10.0)


def test_jit_remat_cond_while_run_on_the_engine(engine_calls):
    from plait.linen import _lift

    _lift._jitted.cache_clear()  # core.jit is called once per jit configuration

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x, flag):
            x = nn.jit(Scale)(name="jitted")(x)
            x = nn.remat(Scale)(name="rematted")(x)
            x = nn.cond(flag, lambda m, x: x * 2, lambda m, x: -x, self, x)
            return nn.while_loop(lambda m, c: c[1] < 3,
                                 lambda m, c: (c[0] + 1.0, c[1] + 1), self, (x, 0))[0]

    x = jnp.array([1.0, 2.0])
    variables = Model().init(KEY, x, True)
    p = variables["params"]
    y = Model().apply(variables, x, False)
    h = x * p["jitted"]["w"].value + p["jitted"]["b"]
    h = h * p["rematted"]["w"].value + p["rematted"]["b"]
    np.testing.assert_allclose(y, -h + 3.0, rtol=1e-6)
    assert engine_calls["jit"] == 1
    for name in ("remat", "switch", "while_loop"):
        assert engine_calls[name] == 2, name


def test_autodiff_runs_on_the_engine(engine_calls):
    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            d = Scale()
            y, vjp_fn = nn.vjp(lambda m, x: m(x), d, x)
            params_ct, x_ct = vjp_fn(jnp.ones_like(y))
            return y, params_ct, x_ct

    x = jnp.array([1.0, 3.0])
    variables = Model().init(KEY, x)
    w = variables["params"]["Scale_0"]["w"].value
    y, params_ct, x_ct = Model().apply(variables, x)
    np.testing.assert_allclose(params_ct["params"]["w"].value, x)  # boxed like the params
    assert params_ct["params"]["w"].names == ("embed",)
    np.testing.assert_allclose(params_ct["params"]["b"], [1.0, 1.0])
    np.testing.assert_allclose(x_ct, w)
    assert engine_calls["vjp"] >= 2


def test_jvp_grad_and_custom_vjp_run_on_the_engine(engine_calls):
    class Square(nn.Module):
        @nn.compact
        def __call__(self, x):
            s = self.param("s", jax.nn.initializers.constant(3.0), ())
            self.sow("intermediates", "seen", x)
            return s * x**2

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            sq = Square()
            if self.is_initializing():
                return sq(x)
            y, t = nn.jvp(lambda m, x: m(x), sq, (x,), (jnp.ones_like(x),),
                          {"params": {"s": jnp.array(1.0)}})
            g = nn.grad(lambda m, x: m(x).sum(), sq, x)
            return y, t, g

    x = jnp.array([1.0, 2.0])
    variables = Model().init(KEY, x)
    (y, t, (g,)), state = Model().apply(variables, x, mutable=["intermediates"])
    # d/ds (s x^2) * 1 + d/dx (s x^2) * 1 = x^2 + 2 s x with s = 3
    np.testing.assert_allclose(y, 3 * x**2)
    np.testing.assert_allclose(t, x**2 + 6 * x)
    np.testing.assert_allclose(g, 6 * x)
    # Both sow calls wrote the collection through the engine's outputs.
    assert "seen" in state["intermediates"]["Square_0"]
    assert engine_calls["jvp"] == 1 and engine_calls["value_and_grad"] == 1

    class Clipped(nn.Module):
        @nn.compact
        def __call__(self, x):
            def f(m, x):
                return m(x)

            def fwd(m, x):
                return nn.vjp(f, m, x)

            def bwd(vjp_fn, y_t):
                params_t, x_t = vjp_fn(y_t)
                return jax.tree.map(lambda g: jnp.clip(g, -1.0, 1.0), (params_t, x_t))

            return nn.custom_vjp(f, forward_fn=fwd, backward_fn=bwd)(Square(), x).sum()

    variables = Clipped().init(KEY, x)
    grads = jax.grad(lambda p, x: Clipped().apply({"params": p}, x), argnums=(0, 1))(
        variables["params"], x
    )
    # unclipped: d/ds = sum(x^2) = 5, d/dx = 6x = [6, 12]
    np.testing.assert_allclose(grads[0]["Square_0"]["s"], 1.0)
    np.testing.assert_allclose(grads[1], [1.0, 1.0])
    assert engine_calls["custom_vjp"] >= 2


def test_switch_precreates_every_branch_then_runs_on_the_engine(engine_calls):
    class Branches(nn.Module):
        @nn.compact
        def __call__(self, i, x):
            branches = [lambda m, x, k=k: nn.Dense(2, name=f"d{k}")(x) * (k + 1) for k in range(3)]
            return nn.switch(i, branches, self, x)

    x = jnp.ones((1, 2))
    variables = Branches().init(KEY, 0, x)
    assert set(variables["params"]) == {"d0", "d1", "d2"}
    for k in range(3):
        p = variables["params"][f"d{k}"]
        np.testing.assert_allclose(Branches().apply(variables, k, x),
                                   (x @ p["kernel"] + p["bias"][None]) * (k + 1), rtol=1e-6)
    assert engine_calls["switch"] == 4


def test_scan_first_step_joins_boxed_slices_at_a_nonzero_axis():
    class Track(nn.Module):
        @nn.compact
        def __call__(self, c, x):
            w = self.param("w", jax.nn.initializers.constant(0.5), ())
            c = c * w + x
            h = self.variable(
                "state", "h",
                nn.with_partitioning(lambda s: jnp.zeros(s), ("embed",)), c.shape,
            )
            h.value = c
            return c, c.sum()

    Loop = nn.scan(
        Track, variable_broadcast="params", variable_axes={"state": 1},
        split_rngs={"params": False}, reverse=True,
        metadata_params={nn.PARTITION_NAME: "time"},
    )
    xs = jnp.arange(6.0).reshape(3, 2)
    c0 = jnp.zeros(2)
    variables = Loop().init(KEY, c0, xs)
    h = variables["state"]["h"]
    assert h.names == ("embed", "time")
    # reverse scan: steps see xs[2], xs[1], xs[0]; c_t = 0.5 c + x_t
    c2 = xs[2]
    c1 = 0.5 * c2 + xs[1]
    c0_ = 0.5 * c1 + xs[0]
    np.testing.assert_allclose(h.value, jnp.stack([c0_, c1, c2], axis=1))
    (c, ys), state = Loop().apply(variables, c0, xs, mutable=["state"])
    np.testing.assert_allclose(c, c0_)
    np.testing.assert_allclose(ys, [c0_.sum(), c1.sum(), c2.sum()])
    assert state["state"]["h"].names == ("embed", "time")
