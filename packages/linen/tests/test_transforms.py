"""Lifted transforms compared with hand-written JAX references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from plait import linen as nn
from plait.linen import errors

KEY = jax.random.key(0)


class Dense(nn.Module):
    features: int

    @nn.compact
    def __call__(self, x):
        kernel = self.param(
            "kernel", jax.nn.initializers.lecun_normal(), (x.shape[-1], self.features)
        )
        bias = self.param("bias", jax.nn.initializers.normal(1.0), (self.features,))
        return x @ kernel + bias.reshape((1,) * (x.ndim - 1) + (-1,))


def dense_ref(p, x):
    return x @ p["kernel"] + p["bias"].reshape((1,) * (x.ndim - 1) + (-1,))


def shapes(tree):
    return jax.tree.map(jnp.shape, tree)


def test_vmap_ensemble_matches_per_member_reference():
    Ensemble = nn.vmap(
        Dense, variable_axes={"params": 0}, split_rngs={"params": True}, in_axes=None, axis_size=3
    )
    x = jnp.arange(8.0).reshape(2, 4)
    variables = Ensemble(5).init(KEY, x)
    assert shapes(variables) == {"params": {"bias": (3, 5), "kernel": (3, 4, 5)}}
    p = variables["params"]
    assert not np.allclose(p["bias"][0], p["bias"][1])  # split rngs: distinct members
    expected = jnp.stack([dense_ref(jax.tree.map(lambda a, i=i: a[i], p), x) for i in range(3)])
    np.testing.assert_allclose(Ensemble(5).apply(variables, x), expected, rtol=1e-6)


def test_vmap_over_batch_with_shared_params_equals_jax_vmap():
    Batched = nn.vmap(
        Dense, variable_axes={"params": None}, split_rngs={"params": False}, in_axes=1, out_axes=0
    )
    x = jax.random.normal(KEY, (4, 3, 2))
    variables = Batched(5).init(KEY, x)
    assert shapes(variables) == {"params": {"bias": (5,), "kernel": (2, 5)}}
    expected = jax.vmap(lambda xi: dense_ref(variables["params"], xi), in_axes=1)(x)
    np.testing.assert_allclose(Batched(5).apply(variables, x), expected, rtol=1e-6)


def test_vmap_as_method_decorator_with_axis_name():
    class Normalized(nn.Module):
        @nn.compact
        def __call__(self, x):
            return x - jax.lax.pmean(x, "batch")

    Mapped = nn.vmap(Normalized, variable_axes={}, split_rngs={}, axis_name="batch")
    x = jnp.array([1.0, 2.0, 6.0])
    np.testing.assert_allclose(Mapped().apply({}, x), x - 3.0)


def test_vmap_needs_axis_size_to_split_rngs():
    Ensemble = nn.vmap(
        Dense, variable_axes={"params": 0}, split_rngs={"params": True}, in_axes=None
    )
    with pytest.raises(errors.LiftedVariableLayoutError, match="pass axis_size"):
        Ensemble(2).init(KEY, jnp.ones((1, 2)))


class Cell(nn.Module):
    @nn.compact
    def __call__(self, carry, x):
        h = jnp.tanh(Dense(carry.shape[-1])(jnp.concatenate([carry, x], -1)))
        return h, 2 * h


def test_scan_with_broadcast_params_matches_python_loop():
    Scan = nn.scan(Cell, variable_broadcast="params", split_rngs={"params": False})
    c0, xs = jnp.zeros((3,)), jax.random.normal(KEY, (5, 2))
    variables = Scan().init(KEY, c0, xs)
    assert shapes(variables) == {"params": {"Dense_0": {"bias": (3,), "kernel": (5, 3)}}}
    c, ys = Scan().apply(variables, c0, xs)
    p, h, outs = variables["params"]["Dense_0"], c0, []
    for t in range(5):
        h = jnp.tanh(dense_ref(p, jnp.concatenate([h, xs[t]])))
        outs.append(2 * h)
    np.testing.assert_allclose(c, h, rtol=1e-5)
    np.testing.assert_allclose(ys, jnp.stack(outs), rtol=1e-5)


def test_scan_reverse_and_time_axis():
    Scan = nn.scan(
        Cell,
        variable_broadcast="params",
        split_rngs={"params": False},
        in_axes=1,
        out_axes=1,
        reverse=True,
    )
    c0, xs = jnp.zeros((2, 3)), jax.random.normal(KEY, (2, 4, 2))  # time on axis 1
    variables = Scan().init(KEY, c0, xs)
    c, ys = Scan().apply(variables, c0, xs)
    p, h, outs = variables["params"]["Dense_0"], c0, {}
    for t in reversed(range(4)):
        h = jnp.tanh(dense_ref(p, jnp.concatenate([h, xs[:, t]], -1)))
        outs[t] = 2 * h
    assert ys.shape == (2, 4, 3)
    np.testing.assert_allclose(c, h, rtol=1e-5)
    np.testing.assert_allclose(ys, jnp.stack([outs[t] for t in range(4)], 1), rtol=1e-5)


def test_scan_stacked_layers_with_split_rngs():
    class Layer(nn.Module):
        @nn.compact
        def __call__(self, x, _):
            return jnp.tanh(Dense(x.shape[-1])(x)), None

    Stack = nn.scan(Layer, variable_axes={"params": 0}, split_rngs={"params": True}, length=4)
    x = jnp.ones((2, 3))
    variables = Stack().init(KEY, x, None)
    kernels = variables["params"]["Dense_0"]["kernel"]
    assert kernels.shape == (4, 3, 3) and not np.allclose(kernels[0], kernels[1])
    out, _ = Stack().apply(variables, x, None)
    h = x
    for i in range(4):
        h = jnp.tanh(
            dense_ref(jax.tree.map(lambda a, i=i: a[i], variables["params"]["Dense_0"]), h)
        )
    np.testing.assert_allclose(out, h, rtol=1e-5)


def test_scan_broadcast_argument_and_carry_variables():
    class Step(nn.Module):
        @nn.compact
        def __call__(self, c, x, scale):
            count = self.variable("counter", "n", lambda: jnp.zeros((), jnp.int32))
            count.value += 1
            return c + scale * x, c

    Scan = nn.scan(Step, variable_carry="counter", in_axes=(0, nn.broadcast))
    xs = jnp.arange(5.0)
    variables = Scan().init(KEY, 0.0, xs, 10.0)
    assert int(variables["counter"]["n"]) == 5
    (c, ys), state = Scan().apply(variables, 0.0, xs, 10.0, mutable=["counter"])
    assert float(c) == 10.0 * xs.sum()
    np.testing.assert_allclose(ys, 10.0 * jnp.concatenate([jnp.zeros(1), jnp.cumsum(xs)[:-1]]))
    assert int(state["counter"]["n"]) == 10


def test_scan_as_function_on_a_bound_submodule():
    class Model(nn.Module):
        def setup(self):
            self.cell = Cell()

        def __call__(self, c, xs):
            scan = nn.scan(
                lambda cell, c, x: cell(c, x),
                variable_broadcast="params",
                split_rngs={"params": False},
            )
            return scan(self.cell, c, xs)

    c0, xs = jnp.zeros((3,)), jnp.ones((4, 2))
    variables = Model().init(KEY, c0, xs)
    assert shapes(variables) == {"params": {"cell": {"Dense_0": {"bias": (3,), "kernel": (5, 3)}}}}
    c, _ = Model().apply(variables, c0, xs)
    assert c.shape == (3,)


def test_scan_keeps_partition_metadata_axis():
    class Layer(nn.Module):
        @nn.compact
        def __call__(self, x, _):
            w = self.param(
                "w", nn.with_partitioning(jax.nn.initializers.ones, ("embed",)), x.shape[-1:]
            )
            return x * w[None], None

    Stack = nn.scan(
        Layer,
        variable_axes={"params": 0},
        split_rngs={"params": True},
        length=3,
        metadata_params={nn.PARTITION_NAME: "layers"},
    )
    variables = Stack().init(KEY, jnp.ones((1, 2)), None)
    box = variables["params"]["w"]
    assert isinstance(box, nn.Partitioned) and box.names == ("layers", "embed")
    assert box.value.shape == (3, 2)
    out, _ = Stack().apply(variables, jnp.ones((1, 2)), None)
    np.testing.assert_allclose(out, jnp.ones((1, 2)))


def test_jit_matches_eager_and_caches_the_trace():
    traces = []

    class Traced(nn.Module):
        @nn.compact
        def __call__(self, x):
            traces.append(1)
            return Dense(3)(x)

    Jitted = nn.jit(Traced)
    x = jnp.ones((2, 4))
    variables = Jitted().init(KEY, x)
    assert shapes(variables) == {"params": {"Dense_0": {"bias": (3,), "kernel": (4, 3)}}}
    traces.clear()
    y1 = Jitted().apply(variables, x)
    y2 = Jitted().apply(variables, 2 * x)
    assert len(traces) == 1  # second call hits the compile cache
    np.testing.assert_allclose(y1, dense_ref(variables["params"]["Dense_0"], x), rtol=1e-6)
    np.testing.assert_allclose(y2, dense_ref(variables["params"]["Dense_0"], 2 * x), rtol=1e-6)


def test_jit_method_decorator_with_static_argnums():
    class Model(nn.Module):
        @nn.compact
        def __call__(self, x, double):
            y = Dense(2)(x)
            return 2 * y if double else y

        @nn.jit
        def encode(self, x):
            return self(x, True)

    Model.__call__ = nn.jit(Model.__call__, static_argnums=(2,))
    x = jnp.ones((1, 3))
    variables = Model().init(KEY, x, False)
    y = Model().apply(variables, x, False)
    np.testing.assert_allclose(Model().apply(variables, x, True), 2 * y, rtol=1e-6)


def test_remat_gradients_equal_plain_gradients():
    x = jax.random.normal(KEY, (3, 4))
    Remat = nn.remat(Dense)
    variables = Remat(2).init(KEY, x)

    def loss(module, params):
        return (module.apply({"params": params}, x) ** 2).sum()

    g_remat = jax.grad(lambda p: loss(Remat(2), p))(variables["params"])
    g_plain = jax.grad(lambda p: loss(Dense(2), p))(variables["params"])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5), g_remat, g_plain)


def test_remat_scan_stacks_blocks():
    class Block(nn.Module):
        @nn.compact
        def __call__(self, x):
            return x + self.param("b", jax.nn.initializers.normal(1.0), ())

    Deep = nn.remat_scan(Block, lengths=(2, 3))
    variables = Deep().init(KEY, 0.0)
    b = variables["params"]["b"]
    assert b.shape == (2, 3) and len(np.unique(np.asarray(b))) == 6
    np.testing.assert_allclose(Deep().apply(variables, 0.0), b.sum(), rtol=1e-5)


def test_cond_and_switch_with_variables_in_branches():
    class CondModule(nn.Module):
        @nn.compact
        def __call__(self, x, pred):
            self.variable("state", "true_count", lambda: 0)

            def true_fn(mdl, x):
                mdl.variable("state", "true_count").value += 1
                return Dense(2, name="dense")(x)

            def false_fn(mdl, x):
                return -Dense(2, name="dense")(x)

            return nn.cond(pred, true_fn, false_fn, self, x)

    x = jnp.ones((1, 3))
    variables = CondModule().init(KEY, x, True)
    y_true, state = CondModule().apply(variables, x, True, mutable=["state"])
    y_false, state2 = CondModule().apply(variables, x, False, mutable=["state"])
    np.testing.assert_allclose(y_true, -y_false)
    assert int(state["state"]["true_count"]) == 2 and int(state2["state"]["true_count"]) == 1

    class OneBranchEach(nn.Module):
        @nn.compact
        def __call__(self, x, index):
            branches = [lambda m, x: Dense(2, name="a")(x), lambda m, x: 3 * Dense(2, name="b")(x)]
            return nn.switch(index, branches, self, x)

    variables = OneBranchEach().init(KEY, x, 0)
    assert sorted(variables["params"]) == ["a", "b"]
    np.testing.assert_allclose(
        OneBranchEach().apply(variables, x, 1),
        3 * dense_ref(variables["params"]["b"], x),
        rtol=1e-6,
    )


def test_while_loop_with_carry_variables():
    class Loop(nn.Module):
        @nn.compact
        def __call__(self, x):
            scale = self.param("scale", jax.nn.initializers.constant(0.5), ())
            self.variable("state", "steps", lambda: jnp.zeros((), jnp.int32))

            def cond_fn(mdl, c):
                return mdl.get_variable("state", "steps") < 4

            def body_fn(mdl, c):
                steps = mdl.variable("state", "steps")
                steps.value += 1
                return c * scale

            return nn.while_loop(cond_fn, body_fn, self, x, carry_variables="state")

    variables = Loop().init(KEY, 1.0)
    y, state = Loop().apply(
        {"params": variables["params"], "state": {"steps": 0}}, 2.0, mutable=["state"]
    )
    assert float(y) == 2.0 * 0.5**4 and int(state["state"]["steps"]) == 4


def test_vjp_jvp_and_grad():
    class Scale(nn.Module):
        @nn.compact
        def __call__(self, x, y):
            return self.param("s", jax.nn.initializers.constant(2.0), ()) * x * y

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x, y):
            out, bwd = nn.vjp(lambda m, x, y: m(x, y), Scale(), x, y)
            params_grad, x_grad, y_grad = bwd(jnp.ones_like(out))
            x_grad2, y_grad2 = nn.grad(lambda m, x, y: m(x, y).sum(), Scale(name="g"), x, y)
            return params_grad, x_grad, y_grad, x_grad2, y_grad2

    x, y = jnp.array([1.0, 2.0]), jnp.array([3.0, 4.0])
    variables = Model().init(KEY, x, y)
    params_grad, x_grad, y_grad, x_grad2, y_grad2 = Model().apply(variables, x, y)
    assert float(params_grad["params"]["s"]) == float((x * y).sum())
    np.testing.assert_allclose(x_grad, 2.0 * y)
    np.testing.assert_allclose(y_grad, 2.0 * x)
    np.testing.assert_allclose(x_grad2, 2.0 * y)
    np.testing.assert_allclose(y_grad2, 2.0 * x)

    class Tangent(nn.Module):
        @nn.compact
        def __call__(self, x, y):
            scale = Scale()
            if self.is_initializing():
                return scale(x, y)
            tangents = {"params": {"s": jnp.ones(())}}
            return nn.jvp(
                lambda m, x, y: m(x, y), scale, (x, y), (jnp.zeros(2), jnp.zeros(2)), tangents
            )

    variables = Tangent().init(KEY, x, y)
    out, out_tangent = Tangent().apply(variables, x, y)
    np.testing.assert_allclose(out, 2 * x * y)
    np.testing.assert_allclose(out_tangent, x * y)


def test_custom_vjp_replaces_the_gradient():
    class SignGrad(nn.Module):
        @nn.compact
        def __call__(self, x):
            def f(mdl, x):
                return mdl(x)

            def fwd(mdl, x):
                return nn.vjp(f, mdl, x)

            def bwd(vjp_fn, y_t):
                params_t, *inputs_t = vjp_fn(y_t)
                return (jax.tree.map(jnp.sign, params_t), *inputs_t)

            return nn.custom_vjp(f, forward_fn=fwd, backward_fn=bwd)(Dense(1), x).sum()

    x = jnp.array([[1.0, -2.0]])
    variables = SignGrad().init(KEY, x)
    grads = jax.grad(lambda p: SignGrad().apply({"params": p}, x))(variables["params"])
    np.testing.assert_allclose(grads["Dense_0"]["kernel"], jnp.sign(x.T))
    np.testing.assert_allclose(grads["Dense_0"]["bias"], [1.0])


def test_map_variables_transforms_params_on_the_way_in():
    class Causal(nn.Module):
        def setup(self):
            triu = lambda a: jnp.triu(a) if a.ndim == 2 else a
            mask = lambda v: v if self.is_initializing() else jax.tree.map(triu, v)
            self.dense = nn.map_variables(Dense, "params", mask, init=self.is_initializing())(3)

        def __call__(self, x):
            return self.dense(x)

    variables = Causal().init(KEY, jnp.ones((1, 3)))
    p = variables["params"]["dense"]
    y = Causal().apply(variables, jnp.eye(3))
    np.testing.assert_allclose(y, jnp.triu(p["kernel"]) + p["bias"][None], rtol=1e-6)


def test_transform_target_errors():
    with pytest.raises(errors.TransformTargetError, match="Module subclass or a function"):
        nn.vmap(3, variable_axes={}, split_rngs={})
    with pytest.raises(errors.TransformTargetError, match="a Module is required"):
        nn.jit(lambda m, x: x)(1.0, 2.0)


def test_auto_names_continue_across_function_transforms():
    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = Dense(2)(x)
            x = nn.jit(lambda m, x: Dense(2)(x))(self, x)
            x = nn.cond(True, lambda m, x: Dense(2)(x), lambda m, x: -Dense(2)(x), self, x)
            return Dense(2)(x)

    x = jnp.ones((1, 2))
    variables = Model().init(KEY, x)
    assert sorted(variables["params"]) == ["Dense_0", "Dense_1", "Dense_2", "Dense_3"]
    y1 = Model().apply(variables, x)
    y2 = Model().apply(variables, x)  # the jitted call is a cache hit: same names
    np.testing.assert_allclose(y1, y2)


def test_lifted_method_cannot_return_a_bound_module():
    class Leaky(nn.Module):
        @nn.compact
        def __call__(self, x):
            return self

    with pytest.raises(errors.TransformedMethodReturnValueError, match="returned a bound Module"):
        nn.remat(Leaky)().init(KEY, 1.0)


def test_keyword_arguments_are_broadcast_through_vmap_scan_and_remat():
    class Flagged(nn.Module):
        @nn.compact
        def __call__(self, c, x, *, negate=False):
            y = -x if negate else x
            return c + y, y

    xs = jnp.arange(3.0)
    Scan = nn.scan(Flagged, length=3)
    (c, ys) = Scan().apply({}, 0.0, xs, negate=True)
    assert float(c) == -3.0
    Mapped = nn.vmap(Flagged, variable_axes={}, split_rngs={}, in_axes=(None, 0))
    c, ys = Mapped().apply({}, 1.0, xs, negate=True)
    np.testing.assert_allclose(ys, -xs)
    c, y = nn.remat(Flagged)().apply({}, 1.0, 2.0, negate=True)
    assert float(y) == -2.0
