"""grad / value_and_grad / vjp / jvp / custom_vjp / remat against the same math in pure JAX."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from plait import core as pc


class BatchNormLinear(pc.Object):
    """Linear layer followed by batch normalisation with running statistics."""

    def __init__(self, din: int, dout: int) -> None:
        self.w = pc.Param(jax.random.normal(jax.random.key(0), (din, dout)))
        self.scale = pc.Param(jnp.ones(dout))
        self.mean = pc.BatchStat(jnp.zeros(dout))
        self.var = pc.BatchStat(jnp.ones(dout))
        self.steps = pc.Variable(jnp.array(0))

    def __call__(self, x: jax.Array) -> jax.Array:
        h = x @ self.w[...]
        m, v = h.mean(0), h.var(0)
        self.mean[...] = 0.9 * self.mean[...] + 0.1 * m
        self.var[...] = 0.9 * self.var[...] + 0.1 * v
        self.steps[...] += 1
        return (h - m[None]) / jnp.sqrt(v[None] + 1e-5) * self.scale[...][None]


def pure_loss(params, stats, x, y):
    h = x @ params["w"]
    m, v = h.mean(0), h.var(0)
    new_stats = {"mean": 0.9 * stats["mean"] + 0.1 * m, "var": 0.9 * stats["var"] + 0.1 * v}
    out = (h - m[None]) / jnp.sqrt(v[None] + 1e-5) * params["scale"][None]
    return jnp.mean((out - y) ** 2), new_stats


X = jax.random.normal(jax.random.key(1), (8, 3))
Y = jax.random.normal(jax.random.key(2), (8, 2))


def model_loss(model, x, y):
    return jnp.mean((model(x) - y) ** 2)


@pytest.mark.parametrize("jitted", [False, True])
def test_value_and_grad_matches_pure_jax_and_updates_running_stats(jitted):
    model = BatchNormLinear(3, 2)
    params = {"w": model.w[...], "scale": model.scale[...]}
    stats = {"mean": model.mean[...], "var": model.var[...]}
    (ref_loss, ref_stats), ref_grads = jax.value_and_grad(pure_loss, has_aux=True)(params, stats, X, Y)
    fn = pc.value_and_grad(model_loss)
    if jitted:
        fn = pc.jit(fn)
    loss, grads = fn(model, X, Y)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    assert isinstance(grads, pc.State) and set(grads) == {"w", "scale"}
    assert isinstance(grads["w"], pc.Param)
    np.testing.assert_allclose(grads["w"][...], ref_grads["w"], rtol=1e-5)
    np.testing.assert_allclose(grads["scale"][...], ref_grads["scale"], rtol=1e-5)
    np.testing.assert_allclose(model.mean[...], ref_stats["mean"], rtol=1e-5)
    np.testing.assert_allclose(model.var[...], ref_stats["var"], rtol=1e-5)
    assert int(model.steps[...]) == 1


def test_grad_with_diffstate_argnums_and_arrays():
    m1, m2 = BatchNormLinear(3, 2), BatchNormLinear(3, 2)

    def loss(a, b, x):
        return jnp.sum(a.w[...] * b.w[...]) + jnp.sum(a.scale[...] * b.scale[...]) * jnp.sum(x)

    ga, gb, gx = pc.grad(loss, argnums=(pc.DiffState(0, pc.PathContains("w")), 1, 2))(m1, m2, X)
    assert set(ga) == {"w"} and set(gb) == {"w", "scale"}
    np.testing.assert_allclose(ga["w"][...], m2.w[...])
    np.testing.assert_allclose(gb["scale"][...], m1.scale[...] * jnp.sum(X))
    np.testing.assert_allclose(gx, jnp.full(X.shape, jnp.sum(m1.scale[...] * m2.scale[...])))
    with pytest.raises(pc.PlaitCoreError, match="repeated"):
        pc.grad(loss, argnums=(0, 0))


def test_grad_has_aux_returns_objects_and_writes_back():
    model = BatchNormLinear(3, 2)

    def loss(m, x):
        return jnp.sum(m(x)), {"model": m, "double": 2 * x}

    grads, aux = pc.grad(loss, has_aux=True)(model, X)
    assert aux["model"] is model
    np.testing.assert_allclose(aux["double"], 2 * X)
    assert set(grads) == {"w", "scale"}
    assert int(model.steps[...]) == 1


def test_grad_of_container_argument_mirrors_its_structure():
    a, b = BatchNormLinear(3, 2), BatchNormLinear(3, 2)
    grads = pc.grad(lambda pair: jnp.sum(pair[0].w[...]) + 2 * jnp.sum(pair[1]["w"].w[...]))((a, {"w": b}))
    assert isinstance(grads, tuple) and isinstance(grads[1], dict)
    np.testing.assert_allclose(grads[0]["w"][...], jnp.ones((3, 2)))
    np.testing.assert_allclose(grads[1]["w"]["w"][...], 2 * jnp.ones((3, 2)))


def test_grad_tree_mode_returns_the_input_type():
    model = BatchNormLinear(3, 2)
    grads = pc.grad(lambda m: jnp.sum(m.w[...] ** 2), graph=False)(model)
    assert type(grads) is BatchNormLinear
    np.testing.assert_allclose(grads.w[...], 2 * model.w[...])
    np.testing.assert_array_equal(grads.mean[...], jnp.zeros(2))


def test_grad_of_state_argument_gives_state():
    model = BatchNormLinear(3, 2)
    params = pc.state(model, pc.Param)
    grads = pc.grad(lambda p: jnp.sum(p["w"][...] * 3.0))(params)
    np.testing.assert_allclose(grads["w"][...], jnp.full((3, 2), 3.0))


def test_reduce_axes_is_not_supported():
    with pytest.raises(NotImplementedError, match="reduce_axes"):
        pc.grad(lambda x: x, reduce_axes=("batch",))


def test_vjp_and_jvp_match_pure_jax():
    model = BatchNormLinear(3, 2)
    w = model.w[...]

    def f(m, x):
        return jnp.tanh(x @ m.w[...])

    out, vjp_fn = pc.vjp(f, model, X)
    ref_out, ref_vjp = jax.vjp(lambda w, x: jnp.tanh(x @ w), w, X)
    np.testing.assert_allclose(out, ref_out, rtol=1e-6)
    ct = jnp.ones_like(out)
    m_ct, x_ct = vjp_fn(ct)
    ref_w_ct, ref_x_ct = ref_vjp(ct)
    np.testing.assert_allclose(m_ct["w"][...], ref_w_ct, rtol=1e-5)
    np.testing.assert_allclose(x_ct, ref_x_ct, rtol=1e-5)
    tangent_w = jnp.ones_like(w)
    primal, tangent = pc.jvp(f, (model, X), (pc.State({"w": tangent_w, "scale": jnp.zeros(2)}), jnp.zeros_like(X)))
    _, ref_tangent = jax.jvp(lambda w: jnp.tanh(X @ w), (w,), (tangent_w,))
    np.testing.assert_allclose(tangent, ref_tangent, rtol=1e-5)


def test_vjp_function_is_a_pytree_usable_as_a_custom_vjp_residual():
    w = jnp.array([1.0, -2.0])

    class Lin(pc.Object):
        def __init__(self) -> None:
            self.w = pc.Param(w)

    _, vjp_fn = pc.vjp(lambda m, x: m.w[...] * x, Lin(), jnp.array([3.0, 4.0]))
    leaves, treedef = jax.tree_util.tree_flatten(vjp_fn)
    assert leaves  # the residuals are its leaves, as for jax.vjp's function
    m_ct, x_ct = jax.tree_util.tree_unflatten(treedef, leaves)(jnp.ones(2))
    np.testing.assert_allclose(m_ct["w"][...], [3.0, 4.0])
    np.testing.assert_allclose(x_ct, w)

    @jax.custom_vjp
    def f(x):
        return jnp.sum(x * w)

    def f_fwd(x):
        out, back = pc.vjp(lambda m, x: jnp.sum(m.w[...] * x), Lin(), x)
        return out, back

    def f_bwd(back, g):
        _, x_ct = back(g)
        return (2 * x_ct,)

    f.defvjp(f_fwd, f_bwd)
    np.testing.assert_allclose(jax.grad(f)(jnp.array([3.0, 4.0])), 2 * w)


class Foo(pc.Object):
    def __init__(self) -> None:
        self.x = pc.Param(jnp.array(1.0))
        self.y = pc.Param(jnp.array(2.0))
        self.calls = pc.Variable(jnp.array(0))


def test_custom_vjp_rule_is_used_and_updates_propagate():
    @pc.custom_vjp
    def f(m):
        m.calls[...] += 1
        return jnp.sin(m.x[...]) * m.y[...]

    def f_fwd(m):
        return f(m), (jnp.cos(m.x[...]), m)

    def f_bwd(res, g):
        (m_updates_g,), out_g = g
        cos_x, m = res
        assert set(m_updates_g) == {"x", "y", "calls"}
        m_g = jax.tree.map(lambda v: v, m_updates_g)
        m_g["x"][...] = 10.0 * cos_x * out_g  # deliberately not the true derivative
        m_g["y"][...] = jnp.sin(m.x[...]) * out_g
        return (m_g,)

    f.defvjp(f_fwd, f_bwd)
    m = Foo()
    grads = pc.grad(f)(m)
    np.testing.assert_allclose(grads["x"][...], 10.0 * np.cos(1.0), rtol=1e-6)
    np.testing.assert_allclose(grads["y"][...], np.sin(1.0), rtol=1e-6)
    assert int(m.calls[...]) == 1


def test_custom_vjp_diffstate_and_integer_nondiff_arguments():
    only_x = pc.DiffState(0, pc.PathContains("x"))

    @pc.custom_vjp(nondiff_argnums=(only_x, 2))
    def f(m, z, power):
        return jnp.sin(m.x[...]) * m.y[...] * z**power

    def f_fwd(m, z, power):
        return f(m, z, power), (jnp.cos(m.x[...]), m.y[...], z)

    def f_bwd(power, res, g):
        (m_updates_g, _), out_g = g
        cos_x, y, z = res
        m_g = pc.State({"x": m_updates_g["x"]})
        m_g["x"][...] = cos_x * y * z**power * out_g
        return (m_g, jnp.zeros_like(z))

    f.defvjp(f_fwd, f_bwd)
    g = pc.grad(f, argnums=only_x)(Foo(), jnp.array(3.0), 2)
    np.testing.assert_allclose(g["x"][...], np.cos(1.0) * 2.0 * 9.0, rtol=1e-6)
    assert set(g) == {"x"}
    bad = pc.custom_vjp(lambda m: m.x[...], nondiff_argnums=(0,))
    bad.defvjp(lambda m: (m.x[...], None), lambda m, r, g: ())
    with pytest.raises(pc.PlaitCoreError, match="Integers cannot mark objects"):
        bad(Foo())


def test_remat_matches_and_propagates_updates():
    model = BatchNormLinear(3, 2)
    ref = jax.grad(lambda w: jnp.sum(jnp.sin(X @ w)))(model.w[...])

    @pc.remat
    def block(m, x):
        m.steps[...] += 1
        return jnp.sin(x @ m.w[...])

    grads = pc.grad(lambda m: jnp.sum(block(m, X)))(model)
    np.testing.assert_allclose(grads["w"][...], ref, rtol=1e-5)
    assert int(model.steps[...]) == 1
    assert pc.checkpoint is pc.remat
    jaxpr = jax.make_jaxpr(lambda w: jax.grad(lambda w: jnp.sum(pc.remat(lambda x: jnp.sin(x))(w)))(w))(jnp.ones(3))
    assert "remat" in str(jaxpr) or "checkpoint" in str(jaxpr)


def test_remat_static_argnums():
    @pc.remat(static_argnums=1)
    def f(x, n):
        for _ in range(n):
            x = jnp.sin(x)
        return x

    np.testing.assert_allclose(f(jnp.ones(2), 3), jnp.sin(jnp.sin(jnp.sin(jnp.ones(2)))))


def test_vjp_output_object_is_an_error_naming_the_path():
    model = BatchNormLinear(3, 2)
    with pytest.raises(pc.PlaitCoreError, match=r"BatchNormLinear at out\[1\]"):
        pc.vjp(lambda m: (m.w[...], m), model)


def test_custom_vjp_output_must_be_arrays():
    @pc.custom_vjp
    def f(m):
        return m.x[...], "not an array"

    f.defvjp(lambda m: (f(m), None), lambda res, g: (g[0][0],))
    with pytest.raises(pc.PlaitCoreError, match=r"returned a str at out\[1\]"):
        f(Foo())
