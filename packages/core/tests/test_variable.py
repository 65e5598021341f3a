import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from plait.core import (
    BatchStat,
    Cache,
    Intermediate,
    Param,
    Perturbation,
    Variable,
    VariableError,
    VariableMetadata,
    register_variable_name,
    variable_name_from_type,
    variable_type_from_name,
    with_metadata,
)


def test_value_access_and_set():
    v = Param(jnp.arange(3.0))
    assert v.value.tolist() == [0.0, 1.0, 2.0]
    assert v[...].tolist() == [0.0, 1.0, 2.0]
    assert v.get_value().tolist() == [0.0, 1.0, 2.0]
    v.value = jnp.ones(3)
    assert v[...].tolist() == [1.0, 1.0, 1.0]
    v[...] = jnp.zeros(3)
    assert v[...].tolist() == [0.0, 0.0, 0.0]
    v.set_value(jnp.full(3, 2.0))
    assert v[1].item() == 2.0


def test_index_set_is_functional_on_jax_arrays():
    original = jnp.zeros(3)
    v = Param(original)
    v[1] = 5.0
    assert v[...].tolist() == [0.0, 5.0, 0.0]
    assert original.tolist() == [0.0, 0.0, 0.0]


def test_ellipsis_scalar_fill_keeps_shape_and_dtype():
    v = BatchStat(jnp.ones((2, 2), jnp.float32))
    v[...] = 0
    assert v.shape == (2, 2) and v.dtype == jnp.float32 and float(v.sum()) == 0.0


def test_non_array_values():
    v = Variable({"a": 1})
    assert v[...] == {"a": 1}
    assert v["a"] == 1
    v["b"] = 2
    assert v.value == {"a": 1, "b": 2}


def test_metadata_as_attributes_and_accessors():
    v = Param(jnp.ones((2, 3)), sharding_names=("in", "out"), tag="w")
    assert v.sharding_names == ("in", "out")
    assert v.tag == "w"
    assert v.get_metadata() == {"sharding_names": ("in", "out"), "tag": "w"}
    assert v.get_metadata("tag") == "w"
    assert v.get_metadata("missing", None) is None
    with pytest.raises(VariableError, match="no metadata 'missing'"):
        v.get_metadata("missing")
    v.set_metadata("tag", "x")
    v.set_metadata(foo=1)
    v.set_metadata({"bar": 2})
    assert (v.tag, v.foo, v.bar) == ("x", 1, 2)
    v.note = "attribute assignment is metadata"
    assert v.get_metadata("note") == "attribute assignment is metadata"
    assert v.has_metadata("foo")
    v.del_metadata("foo")
    assert not v.has_metadata("foo")
    with pytest.raises(VariableError, match="set_metadata"):
        v.set_metadata(1, 2, 3)


def test_legacy_sharding_alias():
    v = Param(jnp.ones(2), sharding=("a",))
    assert v.sharding_names == ("a",)
    assert "sharding" not in v.get_metadata()
    with pytest.raises(VariableError, match="legacy alias"):
        Param(jnp.ones(2), sharding=("a",), sharding_names=("b",))


def test_hijax_ref_rejected():
    with pytest.raises(VariableError, match="hijax"):
        Param(1.0, hijax=True)


def test_unknown_attribute_error_names_metadata():
    v = Param(jnp.ones(2), tag="t")
    with pytest.raises(AttributeError, match="no metadata or attribute 'nope'"):
        _ = v.nope


def test_value_attribute_delegation():
    v = Param(jnp.ones((2, 3), jnp.float32))
    assert v.shape == (2, 3)
    assert v.dtype == jnp.float32
    assert v.ndim == 2 and v.size == 6
    assert v.T.shape == (3, 2)
    assert v.astype(jnp.int32).dtype == jnp.int32
    assert float(v.sum()) == 6.0
    assert len(v) == 2
    assert [row.shape for row in v] == [(3,), (3,)]


def test_arithmetic_and_comparison_operators():
    v = Param(jnp.array([1.0, 2.0]))
    w = Param(jnp.array([3.0, 4.0]))
    assert (v + 1).tolist() == [2.0, 3.0]
    assert (1 + v).tolist() == [2.0, 3.0]
    assert (v * w).tolist() == [3.0, 8.0]
    assert (w - v).tolist() == [2.0, 2.0]
    assert (v / 2).tolist() == [0.5, 1.0]
    assert (2 ** v).tolist() == [2.0, 4.0]
    assert (-v).tolist() == [-1.0, -2.0]
    assert (v @ w).item() == 11.0
    assert (v < 2).tolist() == [True, False]
    assert (v >= 2).tolist() == [False, True]
    assert jnp.asarray(v).tolist() == [1.0, 2.0]
    assert np.asarray(v).tolist() == [1.0, 2.0]
    assert (jnp.asarray(v) + v[...]).tolist() == [2.0, 4.0]


def test_inplace_operator_keeps_identity():
    v = Param(jnp.array(1.0))
    same = v
    v += 2
    assert v is same and float(v[...]) == 3.0


def test_identity_equality_and_hash():
    a, b = Param(jnp.ones(1)), Param(jnp.ones(1))
    assert a != b and a == a
    assert len({a, b}) == 2


def test_copy_replace_are_new_objects():
    v = Param(jnp.ones(2), tag="t")
    c = v.copy()
    assert c is not v and type(c) is Param and c.tag == "t"
    c.set_metadata(tag="changed")
    assert v.tag == "t"
    r = v.replace(jnp.zeros(2), tag="r")
    assert r[...].tolist() == [0.0, 0.0] and r.tag == "r" and v.tag == "t"
    r2 = v.replace(value=jnp.full(2, 3.0))
    assert r2[...].tolist() == [3.0, 3.0]
    target = Param(jnp.zeros(2))
    target.copy_from(v)
    assert target.tag == "t" and target[...].tolist() == [1.0, 1.0]


def test_deepcopy():
    v = Param(jnp.ones(2), tag="t")
    c = copy.deepcopy(v)
    assert c is not v and c.tag == "t" and c[...].tolist() == [1.0, 1.0]


def test_pytree_node_keeps_type_and_metadata():
    v = Param(jnp.ones(2), sharding_names=("a",))
    leaves, treedef = jax.tree.flatten(v)
    assert len(leaves) == 1
    doubled = jax.tree.map(lambda x: x * 2, v)
    assert type(doubled) is Param and doubled.sharding_names == ("a",)
    assert doubled[...].tolist() == [2.0, 2.0]
    [(path, _)] = jax.tree_util.tree_leaves_with_path(v)
    assert jax.tree_util.keystr(path) == ".value"


def test_pytree_treedefs_compare_metadata():
    a = jax.tree.structure(Param(1.0, tag="a"))
    b = jax.tree.structure(Param(2.0, tag="a"))
    c = jax.tree.structure(Param(2.0, tag="c"))
    assert a == b and a != c


def test_variables_through_jit():
    @jax.jit
    def f(v):
        return v.replace(v[...] + 1)

    out = f(Param(jnp.zeros(2), tag="t"))
    assert type(out) is Param and out.tag == "t" and out[...].tolist() == [1.0, 1.0]


def test_variable_metadata_and_with_metadata():
    p = Param(VariableMetadata(jnp.ones(2), metadata={"sharding_names": ("x",)}))
    assert p.sharding_names == ("x",) and p.shape == (2,)
    init = with_metadata(jax.nn.initializers.zeros, sharding_names=("a", "b"))
    p = Param(init(jax.random.key(0), (2, 3)))
    assert p.sharding_names == ("a", "b") and p.shape == (2, 3)
    legacy = with_metadata(jax.nn.initializers.zeros, sharding=("c",))
    assert Param(legacy(jax.random.key(0), (1,))).sharding_names == ("c",)


def test_hooks():
    calls = []

    def on_get(var, value):
        calls.append("get")
        return value * 10

    def on_set(var, value):
        calls.append("set")
        return value + 1

    def on_create(var, value):
        calls.append("create")
        return value * 2

    init = with_metadata(lambda: jnp.array(1.0), on_get_value=on_get, on_set_value=on_set, on_create_value=on_create)
    v = Param(init())
    assert float(v.raw_value) == 2.0
    assert float(v.value) == 20.0
    v.value = jnp.array(3.0)
    assert float(v.raw_value) == 4.0
    assert calls == ["create", "get", "set"]


def test_axis_hooks_called():
    seen = []
    v = Param(jnp.ones(2), on_add_axis=lambda var, i, name: seen.append(("add", i, name)),
              on_remove_axis=lambda var, i, name: seen.append(("remove", i, name)))
    v.add_axis(0, "batch")
    v.remove_axis(0, "batch")
    assert seen == [("add", 0, "batch"), ("remove", 0, "batch")]


def test_repr_is_informative():
    text = repr(Param(jnp.zeros((10, 10)), sharding_names=("a", "b")))
    assert "Param(" in text and "shape=(10, 10)" in text and "sharding_names=('a', 'b')" in text
    assert repr(Param(1.0)) == "Param(value=1.0)"


def test_subclass_hierarchy_and_type():
    assert issubclass(Perturbation, Intermediate)
    v = Cache(jnp.zeros(()))
    assert v.type is Cache and v.var_type is Cache


def test_registry_builtins():
    for name, typ in [("params", Param), ("batch_stats", BatchStat), ("cache", Cache),
                      ("intermediates", Intermediate), ("perturbations", Perturbation)]:
        assert variable_type_from_name(name) is typ
        assert variable_name_from_type(typ) == name


def test_registry_unknown_names():
    with pytest.raises(VariableError, match="No Variable type is registered for the collection name 'nope'"):
        variable_type_from_name("nope")
    typ = variable_type_from_name("test_counters", allow_register=True)
    assert issubclass(typ, Variable) and typ.__name__ == "TestCounters"
    assert variable_type_from_name("test_counters") is typ
    assert variable_name_from_type(typ) == "test_counters"
    v = typ(jnp.ones(2))
    assert type(jax.tree.map(lambda x: x, v)) is typ
    based = variable_type_from_name("test_param_like", base=Param, allow_register=True)
    assert issubclass(based, Param)


def test_registry_user_subclass():
    class MyState(Variable):
        pass

    with pytest.raises(VariableError, match="has no registered collection name"):
        variable_name_from_type(MyState)
    assert variable_name_from_type(MyState, allow_register=True) == "MyState"
    assert variable_type_from_name("MyState") is MyState


def test_register_variable_name_decorator_and_conflicts():
    @register_variable_name("test_decorated")
    class Decorated(Variable):
        pass

    assert variable_type_from_name("test_decorated") is Decorated

    class Other(Variable):
        pass

    with pytest.raises(VariableError, match="already registered to Decorated"):
        register_variable_name("test_decorated", Other)
    register_variable_name("test_decorated", Other, overwrite=True)
    assert variable_type_from_name("test_decorated") is Other
    with pytest.raises(VariableError, match="expected a Variable subclass"):
        register_variable_name("bad", int)


def test_subclass_setting_metadata_before_super_init():
    class Tagged(Variable):
        def __init__(self, value):
            self.tag = "early"
            super().__init__(value, extra=1)

    v = Tagged(jnp.ones(1))
    assert v.get_metadata() == {"tag": "early", "extra": 1}
