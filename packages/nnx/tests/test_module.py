"""Module: construction, sow/perturb, traversal, attributes, views, capture, repr, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from plait import nnx


class Affine(nnx.Module):
    """A hand-written dense layer (tests must not depend on the nn package)."""

    def __init__(self, din: int, dout: int, *, rngs: nnx.Rngs):
        self.w = nnx.Param(jax.random.normal(rngs.params(), (din, dout)) * 0.5)
        self.b = nnx.Param(jnp.zeros((dout,)))
        self.din = din

    def __call__(self, x):
        if x.shape[-1] != self.din:
            raise nnx_errors().shape_error(
                self, argument="x", expected=f"(..., {self.din})", actual=x.shape,
                fix=f"pass inputs with {self.din} features",
            )
        y = x @ self.w
        return y + jnp.broadcast_to(self.b[...], y.shape)  # rank promotion is an error here


def nnx_errors():
    from plait.nnx import _errors

    return _errors


class Noise(nnx.Module):
    def __init__(self):
        self.deterministic = False
        self.use_running_average = False

    def set_view(self, deterministic: bool | None = None):
        """Turns the noise off."""
        if deterministic is not None:
            self.deterministic = deterministic

    def __call__(self, x):
        return x


class Model(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.first = Affine(2, 3, rngs=rngs)
        self.noise = Noise()
        self.second = Affine(3, 1, rngs=rngs)

    def __call__(self, x):
        h = self.first(x)
        self.sow(nnx.Intermediate, "hidden", h)
        return self.second(self.noise(h))


@pytest.fixture
def model():
    return Model(nnx.Rngs(0))


def test_module_call_matches_hand_computation(model):
    x = jnp.arange(8.0).reshape(4, 2)
    expected = (x @ model.first.w[...] + model.first.b[...][None]) @ model.second.w[...]
    np.testing.assert_allclose(model(x), expected + model.second.b[...][None], rtol=1e-6)


def test_sow_appends_to_a_tuple_and_custom_reduce(model):
    x = jnp.ones((1, 2))
    assert "hidden" not in vars(model)
    model(x)
    model(x + 1)
    hidden = model.hidden[...]
    assert isinstance(model.hidden, nnx.Intermediate) and len(hidden) == 2
    np.testing.assert_allclose(hidden[1] - hidden[0], model.first.w[...].sum(0)[None], rtol=1e-5)

    class Sum(nnx.Module):
        def __call__(self, x):
            self.sow("intermediates", "total", x, reduce_fn=lambda a, b: a + b, init_fn=lambda: 0)
            return x

    s = Sum()
    s(jnp.array(2.0))
    s(jnp.array(3.0))
    assert float(s.total[...]) == 5.0
    assert isinstance(s.total, nnx.Intermediate)  # "intermediates" names Intermediate


def test_sow_rejects_type_clash():
    class Clash(nnx.Module):
        def __init__(self):
            self.h = nnx.Param(jnp.zeros(()))

        def __call__(self):
            self.sow(nnx.Intermediate, "h", 1.0)

    with pytest.raises(TypeError, match="attribute 'h' is a Param, but this call sows a Intermediate"):
        Clash()()


def test_sow_is_a_noop_outside_capture_when_asked():
    class Block(nnx.Module):
        def __call__(self, x):
            return self.sow(nnx.Intermediate, "h", x, capture_noop=True)

    block = Block()
    assert block(1.0) is False and "h" not in vars(block)
    stored, captured = nnx.capture(lambda b: b(1.0))(block)
    assert stored is True and captured["h"][...] == (1.0,)


def test_perturb_gives_the_gradient_of_an_intermediate():
    class Net(nnx.Module):
        def __init__(self):
            self.w = nnx.Param(jnp.array([2.0, -1.0]))

        def __call__(self, x):
            h = self.perturb("dh", x * self.w)
            return jnp.sum(h**2)

    net = Net()
    x = jnp.array([1.0, 3.0])
    assert float(net(x)) == pytest.approx(4.0 + 9.0)  # perturbation starts at zero
    graphdef, params, perturbations = nnx.split(net, nnx.Param, nnx.Perturbation)

    def loss(p):
        return nnx.merge(graphdef, params, p)(x)

    grads = jax.grad(loss)(perturbations)
    np.testing.assert_allclose(grads["dh"][...], 2 * x * net.w[...])  # d/dh sum(h^2)


def test_iter_modules_and_children(model):
    paths = [path for path, _ in model.iter_modules()]
    assert paths == [("first",), ("noise",), ("second",), ()]
    assert [p for p, _ in nnx.iter_modules(model)] == paths
    assert [k for k, _ in model.iter_children()] == ["first", "noise", "second"]
    seq = nnx.Sequential(Noise(), Noise())
    assert [k for k, _ in nnx.iter_module_children(seq)] == ["layers"]  # the List itself

    class Stack(nnx.Module):
        def __init__(self):
            self.blocks = [Noise(), Noise()]  # a plain list of modules

    assert [k for k, _ in nnx.iter_module_children(Stack())] == [("blocks", 0), ("blocks", 1)]


def test_set_attributes_train_eval(model):
    model.eval()
    assert model.noise.deterministic is True and model.noise.use_running_average is True
    model.train()
    assert model.noise.deterministic is False
    model.set_attributes(Noise, deterministic=True)
    assert model.noise.deterministic is True
    with pytest.raises(ValueError, match=r"no selected module of Model has the attribute\(s\) \['dropout_rate'\]"):
        model.set_attributes(dropout_rate=0.1)
    model.set_attributes(dropout_rate=0.1, raise_if_not_found=False)
    assert "dropout_rate" not in vars(model.noise)


def test_view_shares_variables_and_leaves_original(model):
    eval_model = nnx.view(model, deterministic=True)
    assert eval_model.noise.deterministic is True
    assert model.noise.deterministic is False
    assert eval_model.first.w is model.first.w
    assert eval_model is not model and eval_model.first is not model.first
    with pytest.raises(ValueError, match=r"no set_view\(\) in Model accepts \['decode'\]"):
        nnx.view(model, decode=True)
    info = nnx.view_info(model)
    assert "Noise.set_view(deterministic: bool | None = None)" in info
    assert "Turns the noise off." in info


def test_with_attributes_copies(model):
    other = nnx.with_attributes(model, only=Noise, deterministic=True)
    assert other.noise.deterministic is True and model.noise.deterministic is False
    assert other.second.b is model.second.b


def test_capture_collects_without_touching_the_modules(model):
    x = jnp.ones((2, 2))
    out, captured = nnx.capture(lambda m, x: m(x))(model, x)
    assert "hidden" not in vars(model)
    np.testing.assert_allclose(out, model(x))  # same computation (this call sows on model)
    assert isinstance(captured["hidden"], nnx.Intermediate)
    np.testing.assert_allclose(captured["hidden"][...][0], model.hidden[...][0])

    _, again = nnx.capture(lambda m, x: m(x))(model, x)
    assert len(again["hidden"][...]) == 1 and len(model.hidden[...]) == 1
    _, continued = nnx.capture(lambda m, x: m(x), init=again)(model, x)
    assert len(continued["hidden"][...]) == 2

    @nnx.capture(nnx.Intermediate, method_outputs=nnx.Intermediate)
    def run(m, x):
        return m(x)

    _, with_outputs = run(model, x)
    np.testing.assert_allclose(with_outputs["__call__"][...][0], out)
    np.testing.assert_allclose(with_outputs["first"]["__call__"][...][0], model.first(x))


def test_repr_is_nested_and_shows_shapes(model):
    text = repr(model)
    assert text.startswith("Model(  # Param: 13 (52 B)")
    assert "first=Affine(" in text and "w=Param(float32[2,3])" in text
    lst = nnx.List([model.first, model.first])
    assert "<shared Affine>" in repr(lst)


def test_shape_error_names_the_module_path(model):
    with pytest.raises(
        ValueError, match=r"Wrapper\.inner\.second \(Affine\) received `x` with shape \(4, 2\)"
    ):
        _bad_second(model)
    with pytest.raises(ValueError, match=r"^Affine received `x` with shape \(5,\), but expected \(\.\.\., 2\)"):
        model.first(jnp.ones((5,)))


def _bad_second(model):
    class Wrapper(nnx.Module):
        def __init__(self, inner):
            self.inner = inner

        def __call__(self, x):
            return self.inner.second(x)  # second expects 3 features

    Wrapper(model)(jnp.ones((4, 2)))


def test_mutation_from_another_trace_explains_the_fix(model):
    @jax.jit
    def bad(x):
        model.noise.scale = x  # model was created outside this trace
        return x

    with pytest.raises(Exception, match=r"(?s)trace.*Fix"):
        bad(jnp.ones(()))


def test_set_graph_updates_false_reaches_the_transforms():
    class Grows(nnx.Module):
        def __init__(self):
            self.w = nnx.Param(jnp.ones(2))

    def add_attribute(m):
        m.extra = nnx.Param(jnp.zeros(1))

    # Like set_graph_mode, the default is read when the transform is created.
    with nnx.set_graph_updates(False):
        frozen_structure = nnx.jit(add_attribute)
    model = Grows()
    frozen_structure(model)
    assert not hasattr(model, "extra")  # structural change not propagated
    nnx.jit(add_attribute)(model)
    assert hasattr(model, "extra")
