"""The lifting engine through ``jit``: write-back, identity, sharing, structure, fast path."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from plait import core as pc


class Counter(pc.Object):
    def __init__(self) -> None:
        self.count = pc.Variable(jnp.array(0))


class Linear(pc.Object):
    def __init__(self, din: int, dout: int, seed: int = 0) -> None:
        key = jax.random.key(seed)
        self.w = pc.Param(jax.random.normal(key, (din, dout)))
        self.b = pc.Param(jnp.zeros(dout))
        self.calls = pc.BatchStat(jnp.array(0))

    def __call__(self, x: jax.Array) -> jax.Array:
        self.calls[...] += 1
        return x @ self.w[...] + self.b[...][None, :]


class Pair(pc.Object):
    def __init__(self, first: pc.Object, second: pc.Object) -> None:
        self.first = first
        self.second = second


def test_counter_incremented_inside_jit_is_written_back():
    counter = Counter()
    variable = counter.count

    @pc.jit
    def step(c, x):
        c.count[...] += 1
        return x + c.count[...]

    outs = [int(step(counter, jnp.array(10))) for _ in range(3)]
    assert outs == [11, 12, 13]
    assert int(counter.count[...]) == 3
    assert counter.count is variable  # the same Variable object was updated in place


def test_jit_matches_pure_jax_and_updates_state():
    model = Linear(3, 2)
    x = jnp.arange(6.0).reshape(2, 3)
    expected = x @ model.w[...] + model.b[...][None, :]
    y = pc.jit(lambda m, x: m(x))(model, x)
    np.testing.assert_allclose(y, expected, rtol=1e-6)
    assert int(model.calls[...]) == 1


def test_shared_module_passed_twice_is_one_object_inside():
    model = Linear(2, 2)
    seen = {}

    @pc.jit
    def f(a, b):
        seen["same"] = a is b
        a.calls[...] += 1
        b.calls[...] += 1
        return a(jnp.ones((1, 2)))

    f(model, model)
    assert seen["same"] is True
    assert int(model.calls[...]) == 3


def test_shared_submodule_across_arguments_stays_shared():
    shared = Linear(2, 2)
    left, right = Pair(shared, Linear(2, 2, 1)), Pair(shared, Linear(2, 2, 2))
    seen = {}

    @pc.jit
    def f(left_pair, right_pair):
        seen["shared"] = left_pair.first is right_pair.first
        left_pair.first.calls[...] += 10
        return right_pair.first.calls[...]

    assert int(f(left, right)) == 10
    assert seen["shared"] is True
    assert left.first is right.first is shared
    assert int(shared.calls[...]) == 10


def test_output_input_module_keeps_identity():
    model = Linear(2, 2)
    f = pc.jit(lambda m: (m, {"again": m}, m.w))
    m, d, w = f(model)
    assert m is model and d["again"] is model
    assert w is model.w


def test_output_new_module_and_mixed_references():
    model = Linear(2, 3)

    @pc.jit
    def wrap(m):
        return Pair(m, Linear(3, 1, seed=5))

    pair = wrap(model)
    assert isinstance(pair, Pair)
    assert pair.first is model
    assert pair.second.w.shape == (3, 1)
    created = pc.jit(lambda: Linear(4, 5))()
    assert created.w.shape == (4, 5) and isinstance(created.w, pc.Param)


def test_structure_change_inside_jit_is_propagated():
    model = Linear(2, 2)
    old_w = model.w

    @pc.jit
    def grow(m):
        m.extra = pc.Variable(jnp.ones(3))
        m.note = "static text"
        del m.b
        m.calls[...] += 1
        return m.w[...].sum()

    grow(model)
    assert model.w is old_w
    assert not hasattr(model, "b")
    assert model.note == "static text"
    np.testing.assert_array_equal(model.extra[...], jnp.ones(3))
    assert int(model.calls[...]) == 1


def test_new_submodule_attached_inside_jit_and_returned_is_the_attached_object():
    model = Linear(2, 2)

    @pc.jit
    def attach(m):
        m.child = Linear(2, 2, seed=3)
        return m.child

    child = attach(model)
    assert child is model.child
    assert isinstance(child, Linear)


def test_cache_hit_path_traces_once_and_structure_change_retraces():
    traces = []
    model = Linear(2, 2)

    @pc.jit
    def step(m, x):
        traces.append(1)
        return m(x)

    x = jnp.ones((1, 2))
    for _ in range(4):
        step(model, x)
    assert len(traces) == 1
    assert int(model.calls[...]) == 4
    # A second object with the same structure reuses the compiled function.
    other = Linear(2, 2, seed=1)
    step(other, x)
    assert len(traces) == 1
    # A structural change retraces once and the new structure is then cached.
    model.extra = pc.BatchStat(jnp.zeros(2))
    step(model, x)
    step(model, x)
    assert len(traces) == 2
    assert int(model.calls[...]) == 6


def test_fast_path_plan_is_reused_between_calls():
    model = Linear(2, 2)
    step = pc.jit(lambda m, x: m(x))
    x = jnp.ones((1, 2))
    step(model, x)
    step(model, x)
    plans = dict(step._plans)
    step(model, x)
    assert step._plans == plans  # no new plan: the hit path did not re-flatten the model
    model.tag = "changed"  # a structural change invalidates the plan
    step(model, x)
    assert list(step._plans.values()) != list(plans.values())


def test_plain_pytree_calls_hit_a_plan_and_objects_in_the_same_places_do_not():
    traces = []

    @pc.jit
    def f(tree, x):
        traces.append(1)
        return jax.tree.map(lambda a: a * 2, tree), x + 1

    tree = {"a": jnp.ones(2), "b": [jnp.zeros(3), 1.5]}
    for _ in range(3):
        out, y = f(tree, x=jnp.ones(2))
    assert len(traces) == 1 and len(f._pure_plans) == 1
    np.testing.assert_array_equal(out["a"], 2 * np.ones(2))
    assert float(out["b"][1]) == 3.0 and float(y[0]) == 2.0
    # An object where an array was (same JAX treedef, since objects are JAX leaves): the
    # general path must see it and write its update back.
    counter = Counter()

    @pc.jit
    def g(tree, c):
        if isinstance(c, Counter):
            c.count[...] += 1
            return tree
        return jax.tree.map(lambda a: a + c, tree)

    g(tree, jnp.ones(()))
    g(tree, jnp.ones(()))
    g(tree, counter)
    g(tree, counter)
    assert int(counter.count[...]) == 2


def test_calls_with_objects_inside_containers_make_no_plain_pytree_plans():
    # Objects are JAX pytrees too: a plain flatten of such arguments would walk the whole
    # object graph on every call, so only functions called with plain pytrees use it.
    model = Linear(2, 2)
    step = pc.jit(lambda pair, batch: pair[0](batch["x"]))
    for _ in range(3):
        step((model, model), {"x": jnp.ones((1, 2))})
    assert not step._pure_plans and int(model.calls[...]) == 3


def test_static_argnums_and_argnames():
    traces = []

    @pc.jit(static_argnums=1, static_argnames="power")
    def f(m, scale, *, power=1):
        traces.append((scale, power))
        return (m.w[...] * scale) ** power

    model = Linear(1, 1)
    w = float(model.w[...][0, 0])
    assert float(f(model, 2.0, power=2)[0, 0]) == pytest.approx((2 * w) ** 2)
    f(model, 2.0, power=2)
    f(model, 3.0, power=2)
    assert traces == [(2.0, 2), (3.0, 2)]
    with pytest.raises(pc.PlaitCoreError, match="static arguments must be hashable"):
        f(model, [1.0])


def test_donate_argnums_updates_state_and_outputs():
    model = Linear(2, 2)

    @pc.jit(donate_argnums=0)
    def step(m, x):
        m.w[...] = m.w[...] * 2
        return m(x)

    w0 = np.asarray(model.w[...])
    y = step(model, jnp.ones((1, 2)))
    np.testing.assert_allclose(model.w[...], w0 * 2)
    np.testing.assert_allclose(y, jnp.ones((1, 2)) @ (w0 * 2), rtol=1e-6)


def test_lower_compile_and_eval_shape():
    model = Linear(3, 2)
    f = pc.jit(lambda m, x: m(x))
    x = jnp.ones((4, 3))
    compiled = f.lower(model, x).compile()
    assert "dot" in f.lower(model, x).as_text()
    y = compiled(model, x)
    assert y.shape == (4, 2) and int(model.calls[...]) == 1
    shape = f.eval_shape(model, x)
    assert shape == jax.ShapeDtypeStruct((4, 2), jnp.float32)
    assert int(model.calls[...]) == 1  # eval_shape leaves the inputs alone
    assert f.trace(model, x).jaxpr is not None


def test_jit_as_method_decorator():
    class Model(pc.Object):
        def __init__(self):
            self.total = pc.Variable(jnp.array(0.0))

        @pc.jit
        def add(self, x):
            self.total[...] += x
            return self.total[...]

    m = Model()
    m.add(1.0)
    assert float(m.add(2.0)) == 3.0


def test_jit_partial_and_cached_partial():
    counter = Counter()

    def bump(c, by):
        c.count[...] += by
        return c.count[...]

    bumped = pc.jit_partial(bump, counter)
    bumped(2)
    assert int(bumped(3)) == 5
    cached = pc.cached_partial(pc.jit(bump), counter)
    assert int(cached(1)) == 6


def test_tree_mode_propagates_values_and_rejects_sharing():
    model = Linear(2, 2)
    f = pc.jit(lambda m, x: m(x), graph=False)
    f(model, jnp.ones((1, 2)))
    assert int(model.calls[...]) == 1
    with pytest.raises(pc.GraphError, match="shared reference"):
        pc.jit(lambda a: a.first, graph=False)(Pair(model, model))


def test_variable_passed_directly_is_updated():
    v = pc.Variable(jnp.array(1.0))

    @pc.jit
    def double(v):
        v[...] *= 2

    double(v)
    double(v)
    assert float(v[...]) == 4.0


def test_jit_in_shardings_with_state_sharding_on_eight_devices():
    mesh = jax.make_mesh((8,), ("d",), axis_types=(jax.sharding.AxisType.Auto,))
    replicated = NamedSharding(mesh, P())
    by_rows = NamedSharding(mesh, P("d"))
    model = Linear(8, 8)
    state_sharding = pc.StateSharding({pc.Param: replicated, ...: replicated})

    @pc.jit(in_shardings=(state_sharding, by_rows), out_shardings=by_rows)
    def f(m, x):
        return m(x)

    y = f(model, jnp.ones((16, 8)))
    assert y.sharding.is_equivalent_to(by_rows, 2)
    np.testing.assert_allclose(y, jnp.ones((16, 8)) @ model.w[...] + model.b[...][None, :], rtol=1e-5)
    assert int(model.calls[...]) == 1


def test_prefix_that_does_not_fit_names_the_argument():
    with pytest.raises(pc.PlaitCoreError, match=r"in_shardings=.* does not fit"):
        pc.jit(lambda a, b: a, in_shardings=(None,))(jnp.ones(2), jnp.ones(2))


def test_mutating_a_closed_over_object_inside_jit_is_an_error():
    counter = Counter()

    @pc.jit
    def f(x):
        counter.extra = x  # structural change of an object created outside the trace
        return x

    with pytest.raises(pc.TraceContextError, match="created outside the current JAX trace"):
        f(jnp.ones(2))


def test_output_that_cannot_leave_is_returned_statically():
    out = pc.jit(lambda x: (x * 2, "label"))(jnp.ones(2))
    assert out[1] == "label"
    np.testing.assert_array_equal(out[0], 2 * jnp.ones(2))


def test_graph_updates_false_keeps_values_and_ignores_structure():
    model = Linear(2, 2)

    @pc.jit(graph_updates=False)
    def f(m):
        m.calls[...] += 1
        m.extra = pc.Variable(jnp.zeros(1))

    f(model)
    assert int(model.calls[...]) == 1
    assert not hasattr(model, "extra")


def test_engine_primitives_lift_enter_exit_apply():
    model = Linear(2, 2)
    lifted = pc.lift((model, jnp.ones(2)), {}, prefix=(pc.StateAxes({pc.Param: "p", ...: "rest"}), "x"))
    assert lifted.var_specs == ["p", "rest", "p"]  # b, calls, w in sorted-key order
    assert lifted.leaf_specs == ["x"]

    def pure(values, leaves):
        call = lifted.skeleton.enter(values, leaves)
        m, x = call.args
        m.calls[...] += 5
        in_values, out_values, out_leaves, info, _, _ = call.exit((m, x * 2))
        return in_values, out_values, out_leaves, pc.StaticBox(info)

    in_values, out_values, out_leaves, box = jax.jit(pure)(lifted.values(), lifted.leaves)
    m, doubled = lifted.apply(box.value, in_values, out_values, out_leaves)
    assert m is model and int(model.calls[...]) == 5
    np.testing.assert_array_equal(doubled, 2 * jnp.ones(2))


def test_bound_methods_lift_their_object():
    class Model(pc.Object):
        def __init__(self):
            self.w = pc.Param(jnp.ones(3))
            self.n = pc.Variable(jnp.array(0))

        def f(self, x, k):
            self.n[...] += 1
            return (self.w[...] * x).sum() * k

    m = Model()
    assert float(pc.jit(m.f, static_argnums=1)(jnp.ones(3), 2)) == 6.0
    np.testing.assert_allclose(pc.grad(m.f)(jnp.ones(3), 2.0), jnp.full(3, 2.0))
    assert pc.vmap(m.f, in_axes=(0, None))(jnp.ones((4, 3)), 2.0).shape == (4,)
    assert float(pc.remat(m.f)(jnp.ones(3), 1.0)) == 3.0
    assert int(m.n[...]) == 4  # each transform wrote the object's update back


def test_objects_holding_bare_arrays_take_the_structural_write_back():
    class Holder(pc.Object):
        def __init__(self):
            self.x = jnp.arange(2.0)  # a bare array stored on the object, not in a Variable
            self.n = pc.Variable(jnp.array(0))

    holder = Holder()

    @pc.jit
    def bump(h, by):
        h.n[...] += by
        return h.x * 2

    @pc.jit
    def shift(h):
        h.x = h.x + 1

    for _ in range(3):
        out = bump(holder, 1)
    np.testing.assert_array_equal(out, jnp.array([0.0, 2.0]))
    np.testing.assert_array_equal(holder.x, jnp.arange(2.0))
    assert isinstance(holder.x, jax.Array) and int(holder.n[...]) == 3
    shift(holder)
    shift(holder)
    np.testing.assert_array_equal(holder.x, jnp.arange(2.0) + 2)
    pc.jit(bump.fun, graph=False)(holder, 2)  # tree mode: Variable values only
    assert int(holder.n[...]) == 5


def test_keyword_arguments_holding_objects_and_donate_argnames():
    model = Linear(2, 2)

    @pc.jit(donate_argnames="m")
    def step(x, *, m):
        m.w[...] = m.w[...] + 1
        return m(x)

    w0 = np.asarray(model.w[...])
    step(jnp.ones((1, 2)), m=model)
    np.testing.assert_allclose(model.w[...], w0 + 1)
    assert int(model.calls[...]) == 1
