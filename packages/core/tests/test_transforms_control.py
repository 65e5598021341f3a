"""cond / switch / while_loop / fori_loop / eval_shape / shard_map with stateful operands."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P
from plait import core as pc


class Acc(pc.Object):
    def __init__(self) -> None:
        self.total = pc.Variable(jnp.array(0.0))
        self.steps = pc.BatchStat(jnp.array(0))


def add(acc, x):
    acc.total[...] += x
    acc.steps[...] += 1
    return acc.total[...]


def sub(acc, x):
    acc.total[...] -= x
    acc.steps[...] += 1
    return acc.total[...]


@pytest.mark.parametrize("pred, expected", [(True, 2.0), (False, -2.0)])
def test_cond_branch_updates_are_written_back(pred, expected):
    acc = Acc()
    out = pc.cond(jnp.array(pred), add, sub, acc, 2.0)
    assert float(out) == float(acc.total[...]) == expected
    assert int(acc.steps[...]) == 1


def test_cond_under_jit_with_traced_predicate():
    acc = Acc()
    step = pc.jit(lambda a, x: pc.cond(x > 0, add, sub, a, x))
    step(acc, 3.0)
    step(acc, -1.0)
    assert float(acc.total[...]) == 4.0
    assert int(acc.steps[...]) == 2


def test_cond_branches_with_different_updates_explain_the_mismatch():
    def grow(acc, x):
        acc.extra = pc.Variable(jnp.array(1.0))
        return x

    with pytest.raises(pc.PlaitCoreError, match="changed the structure of an operand"):
        pc.cond(jnp.array(True), grow, lambda acc, x: x, Acc(), 1.0)


def test_switch_matches_lax_switch():
    branches = [add, sub, lambda acc, x: acc.total[...] * x]
    for index, expected_total in [(0, 3.0), (1, -3.0), (2, 0.0)]:
        acc = Acc()
        out = pc.switch(index, branches, acc, 3.0)
        ref = jax.lax.switch(index, [lambda x: x, lambda x: -x, lambda x: 0.0 * x], 3.0)
        assert float(out) == pytest.approx(float(ref))
        assert float(acc.total[...]) == expected_total


def test_while_loop_updates_state_and_keeps_identity():
    acc = Acc()

    def body(val):
        a, i = val
        a.total[...] += i
        a.steps[...] += 1
        return a, i + 1

    a, i = pc.while_loop(lambda v: v[1] < 5, body, (acc, jnp.array(0.0)))
    assert a is acc
    assert float(acc.total[...]) == 10.0 and int(acc.steps[...]) == 5 and float(i) == 5.0


def test_fori_loop_matches_lax_fori_loop():
    acc = Acc()
    out = pc.fori_loop(0, 6, lambda i, a: (add(a, i * 1.0), a)[1], acc)
    ref = jax.lax.fori_loop(0, 6, lambda i, t: t + i * 1.0, 0.0)
    assert out is acc and float(acc.total[...]) == float(ref)
    assert int(acc.steps[...]) == 6


def test_loop_body_must_keep_structure_and_objects():
    with pytest.raises(pc.PlaitCoreError, match="must come back as the same objects"):
        pc.fori_loop(0, 2, lambda i, a: Acc(), Acc())
    with pytest.raises(pc.PlaitCoreError, match="changed between iterations"):
        pc.fori_loop(0, 2, lambda i, v: (v, v), Acc())

    def grow(i, a):
        a.extra = pc.Variable(jnp.zeros(()))
        return a

    with pytest.raises(pc.PlaitCoreError, match="changed between iterations"):
        pc.fori_loop(0, 2, grow, Acc())


class Big(pc.Object):
    def __init__(self, n: int) -> None:
        self.w = pc.Param(jnp.ones((n, n)))
        self.rngs = pc.Rngs(0)
        self.noise = pc.Variable(jax.random.normal(self.rngs(), (n,)))


def test_eval_shape_builds_abstract_objects_without_computing():
    calls = []

    def build():
        calls.append(1)
        return Big(1024)

    abstract = pc.eval_shape(build)
    assert isinstance(abstract, Big)
    assert abstract.w[...] == jax.ShapeDtypeStruct((1024, 1024), jnp.float32)
    assert isinstance(abstract.noise[...], jax.ShapeDtypeStruct)
    model = Big(2)
    same = pc.eval_shape(lambda m: (m, m.w[...] @ m.w[...]), model)
    assert same[0] is model and same[1].shape == (2, 2)
    assert isinstance(model.w[...], jax.Array)  # inputs untouched


def test_shard_map_on_eight_devices():
    mesh = Mesh(np.array(jax.devices()), ("d",))

    class Layer(pc.Object):
        def __init__(self):
            self.w = pc.Param(jnp.arange(8.0))
            self.seen = pc.BatchStat(jnp.zeros(()))

    layer = Layer()
    specs = pc.StateSharding({pc.Param: P("d"), ...: P()})

    @pc.shard_map(mesh=mesh, in_specs=(specs, P("d")), out_specs=P("d"))
    def scale(m, x):
        assert m.w.shape == (1,) and x.shape == (2,)
        m.seen[...] += jax.lax.psum(x.sum(), "d")
        return x * m.w[...]

    x = jnp.arange(16.0)
    y = scale(layer, x)
    np.testing.assert_allclose(y, x * jnp.repeat(jnp.arange(8.0), 2))
    assert float(layer.seen[...]) == float(x.sum())
