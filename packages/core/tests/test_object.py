import dataclasses

import jax
import jax.numpy as jnp
import pytest
from plait.core import (
    Data,
    Object,
    Param,
    Pytree,
    Static,
    TraceContextError,
    Variable,
    data,
    graphdef,
    is_data,
    merge,
    split,
    state,
    static,
    structure_epoch,
    trace_guard_disabled,
)


class Linear(Object):
    def __init__(self, n):
        self.w = Param(jnp.ones((n, n)))
        self.b = Param(jnp.zeros(n))
        self.n = n


def test_pytree_alias():
    assert Pytree is Object


def test_attribute_classification():
    class Mixed(Object):
        def __init__(self):
            self.p = Param(jnp.ones(1))
            self.arr = jnp.ones(2)
            self.sub = Linear(1)
            self.nums = [1, 2]
            self.arrays = [jnp.ones(1)]
            self.name = "x"
            self.fn = jax.nn.relu

    st = state(Mixed())
    assert set(st) == {"p", "arr", "sub", "arrays"}
    assert is_data(jnp.ones(1)) and is_data([1, Param(1.0)]) and is_data(Linear(1))
    assert not is_data([1, 2]) and not is_data("relu") and not is_data(jax.nn.relu)


def test_data_and_static_markers():
    class Marked(Object):
        def __init__(self):
            self.count = data(0)
            self.table = static(jnp.arange(3))
            self.plain = 5

    obj = Marked()
    assert obj.count == 0 and obj.table.shape == (3,)
    st = state(obj)
    assert st.to_pure_dict() == {"count": 0}
    gd, st = split(obj)
    new = merge(gd, st)
    assert new.count == 0 and new.table.shape == (3,)
    # markers survive a round trip (they live in the GraphDef)
    assert state(new).to_pure_dict() == {"count": 0}
    leaves = jax.tree.leaves(obj)
    assert leaves == [0]


def test_annotations_and_dataclass_fields():
    class Annotated(Object):
        steps: Data[int]
        shape: Static[tuple]

        def __init__(self):
            self.steps = 3
            self.shape = (2, 2)

    assert state(Annotated()).to_pure_dict() == {"steps": 3}

    @dataclasses.dataclass
    class Fields(Object):
        scale: float = data(default=1.0)
        weights: jax.Array = static(default=None)

    assert state(Fields()).to_pure_dict() == {"scale": 1.0}


def test_object_is_jax_pytree():
    lin = Linear(2)
    leaves, treedef = jax.tree.flatten(lin)
    assert len(leaves) == 2
    doubled = jax.tree.map(lambda x: x * 2, lin)
    assert type(doubled) is Linear and doubled.n == 2 and float(doubled.w[...][0, 0]) == 2.0
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(lin)]
    assert paths == [".b.value", ".w.value"]

    @jax.jit
    def f(m):
        return m.w[...].sum() * m.n

    assert float(f(lin)) == 8.0


def test_opting_out_of_pytree_registration():
    class Opaque(Object, pytree=False):
        def __init__(self):
            self.w = Param(jnp.ones(1))

    obj = Opaque()
    assert jax.tree.leaves(obj) == [obj]
    assert "w" in state(obj)


def test_epoch_bumps_on_structural_changes_only():
    lin = Linear(2)
    e0 = structure_epoch()
    lin.w[...] = jnp.zeros((2, 2))
    lin.w.value = jnp.ones((2, 2))
    w = lin.w
    lin.w = w
    assert structure_epoch() == e0
    lin.w = Param(jnp.ones((2, 2)))
    e1 = structure_epoch()
    assert e1 > e0
    lin.n = 3
    e2 = structure_epoch()
    assert e2 > e1
    del lin.n
    assert structure_epoch() > e2


def test_epoch_tracks_list_and_dict_mutation():
    class Holder(Object):
        def __init__(self):
            self.layers = [Linear(1)]
            self.table = {"a": Linear(1)}
            self.nested = ([Linear(1)],)

    h = Holder()
    assert isinstance(h.layers, list) and isinstance(h.table, dict)
    for mutate in [
        lambda: h.layers.append(Linear(1)),
        lambda: h.layers.__setitem__(0, Linear(1)),
        lambda: h.layers.pop(),
        lambda: h.layers.extend([Linear(1)]),
        lambda: h.layers.insert(0, Linear(1)),
        lambda: h.table.__setitem__("b", Linear(1)),
        lambda: h.table.pop("b"),
        lambda: h.table.update(c=Linear(1)),
        lambda: h.nested[0].append(Linear(1)),
    ]:
        before = structure_epoch()
        mutate()
        assert structure_epoch() > before
    before = structure_epoch()
    h.layers[0].w[...] = jnp.zeros((1, 1))
    assert structure_epoch() == before


def test_tracked_containers_roundtrip_and_pytree():
    class Holder(Object):
        def __init__(self):
            self.layers = [Linear(1), Linear(1)]

    h = Holder()
    assert h.layers == [h.layers[0], h.layers[1]]
    new = merge(*split(h))
    before = structure_epoch()
    new.layers.append(Linear(1))
    assert structure_epoch() > before
    mapped = jax.tree.map(lambda x: x, h.layers)
    assert len(mapped) == 2 and isinstance(mapped, list)


def test_graphdef_changes_after_list_mutation():
    class Holder(Object):
        def __init__(self):
            self.layers = [Linear(1)]

    h = Holder()
    before = graphdef(h)
    h.layers.append(Linear(1))
    assert graphdef(h) != before


def test_trace_guard():
    lin = Linear(1)

    def mutate(x):
        lin.n = x
        return x

    with pytest.raises(TraceContextError, match="(?s)Cannot set attribute .n. of Linear.*nnx.jit"):
        jax.jit(mutate)(1.0)
    with pytest.raises(TraceContextError, match="Cannot set attribute"):
        jax.grad(mutate)(1.0)

    def delete(x):
        del lin.n
        return x

    with pytest.raises(TraceContextError, match="Cannot set attribute 'n'"):
        jax.jit(delete)(1.0)

    with trace_guard_disabled():
        jax.jit(lambda x: (setattr(lin, "tmp", 1), x)[1])(1.0)
    assert lin.tmp == 1


def test_objects_created_inside_trace_are_mutable_there():
    @jax.jit
    def f(x):
        lin = Linear(1)
        lin.extra = x
        return lin.extra

    assert float(f(2.0)) == 2.0


def test_variable_value_updates_inside_jit_are_not_guarded():
    # Variables are plain boxes; value writes are checked by the transforms, not here.
    v = Variable(jnp.zeros(()))

    def f(x):
        return x + 1

    assert float(jax.jit(f)(v[...])) == 1.0


def test_repr():
    text = repr(Linear(1))
    assert text.startswith("Linear(") and "n=1" in text and "w=Param(" in text

    class Cyclic(Object):
        pass

    c = Cyclic()
    c.me = c
    assert "Cyclic(...)" in repr(c)


def test_integer_attribute_keys_as_pytree():
    class IntKeyed(Object):  # like nnx.List, which keeps items under integer keys
        pass

    obj = IntKeyed()
    obj.__dict__[1] = Param(jnp.ones(2))
    obj.__dict__[0] = Param(jnp.ones(1))
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(obj)]
    assert paths == ["[0].value", "[1].value"]
    assert list(jax.tree.map(lambda x: x, obj).__dict__) == [0, 1]


@pytest.mark.parametrize(
    "module", ["_variable", "_filters", "_state", "_graph", "_graphdef", "_object", "_rng"]
)
def test_docstring_examples(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(f"plait.core.{module}"))
    assert result.attempted > 0 and result.failed == 0
