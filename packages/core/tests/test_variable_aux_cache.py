"""The pytree aux that a Variable caches, and the metadata dict unflatten shares with it.

A stale cache would hand JAX an old treedef (wrong metadata after a jit call); a write
through a shared dict would change a treedef already held by JAX, or a sibling Variable.
"""

import copy
import pickle

import jax
import jax.numpy as jnp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from plait.core import BatchStat, Param, Variable


def _aux(var):
    return jax.tree_util.tree_structure(var).node_data()[1]


def _meta(treedef):
    return dict(treedef.node_data()[1].metadata)


def _set_attr(v, name, value):
    setattr(v, name, value)


def _set_metadata_kw(v, name, value):
    v.set_metadata(**{name: value})


def _set_metadata_pair(v, name, value):
    v.set_metadata(name, value)


def _set_metadata_mapping(v, name, value):
    v.set_metadata({name: value})


def _copy_from(v, name, value):
    other = v.copy()
    other.set_metadata(name, value)
    v.copy_from(other)


SETTERS = [_set_attr, _set_metadata_kw, _set_metadata_pair, _set_metadata_mapping, _copy_from]


@pytest.mark.parametrize("setter", SETTERS)
def test_write_after_flatten_reaches_the_next_treedef(setter):
    v = Param(jnp.zeros(2), tag="a")
    before = jax.tree_util.tree_structure(v)
    setter(v, "tag", "b")
    after = jax.tree_util.tree_structure(v)
    assert _meta(before) == {"tag": "a"}
    assert _meta(after) == {"tag": "b"}
    assert before != after


def test_delete_after_flatten_reaches_the_next_treedef():
    v = Param(jnp.zeros(2), tag="a", other=1)
    t0 = jax.tree_util.tree_structure(v)
    del v.tag
    t1 = jax.tree_util.tree_structure(v)
    v.del_metadata("other")
    t2 = jax.tree_util.tree_structure(v)
    assert _meta(t0) == {"tag": "a", "other": 1}
    assert _meta(t1) == {"other": 1}
    assert _meta(t2) == {}


def test_sharding_names_after_flatten_reaches_the_next_treedef():
    v = Param(jnp.zeros((2, 2)), sharding_names=("a", None))
    before = jax.tree_util.tree_structure(v)
    v.sharding_names = (None, "b")
    assert _meta(before)["sharding_names"] == ("a", None)
    assert _meta(jax.tree_util.tree_structure(v))["sharding_names"] == (None, "b")


def test_replacing_the_dict_or_the_class_drops_the_cache():
    v = Param(jnp.zeros(2), tag="a")
    jax.tree_util.tree_structure(v)
    v._var_metadata = {"tag": "b"}  # an own slot: not metadata, but it still invalidates
    assert _meta(jax.tree_util.tree_structure(v)) == {"tag": "b"}
    v.__class__ = BatchStat
    assert jax.tree_util.tree_structure(v).node_data()[1].type is BatchStat


def test_cache_is_not_metadata():
    v = Param(jnp.zeros(2), tag="a")
    jax.tree_util.tree_structure(v)
    assert v.get_metadata() == {"tag": "a"}
    assert "_var_aux" not in repr(v)
    assert not v.has_metadata("_var_aux")


@pytest.mark.parametrize("setter", SETTERS)
def test_unflattened_variables_copy_on_first_write(setter):
    leaves, treedef = jax.tree.flatten([Param(jnp.zeros(2), tag="a")])
    [a] = jax.tree.unflatten(treedef, leaves)
    [b] = jax.tree.unflatten(treedef, leaves)
    setter(a, "tag", "b")
    assert a.tag == "b"
    assert b.tag == "a"
    assert _meta(treedef.children()[0]) == {"tag": "a"}
    assert jax.tree.structure([b]) == treedef
    assert jax.tree.structure([a]) != treedef


def test_unflattened_variable_delete_and_sharding_copy_on_write():
    leaves, treedef = jax.tree.flatten([Param(jnp.zeros((2, 2)), tag="a", sharding_names=("x", None))])
    [a] = jax.tree.unflatten(treedef, leaves)
    [b] = jax.tree.unflatten(treedef, leaves)
    del a.tag
    b.sharding_names = (None, "y")
    assert _meta(treedef.children()[0]) == {"tag": "a", "sharding_names": ("x", None)}
    assert a.get_metadata() == {"sharding_names": ("x", None)}
    assert b.get_metadata() == {"tag": "a", "sharding_names": (None, "y")}


def test_unflatten_inside_jit_then_write():
    state = {"w": Param(jnp.ones(2), tag="a")}

    @jax.jit
    def step(s):
        return jax.tree.map(lambda x: x + 1, s)

    out = step(state)
    out2 = step(state)
    out["w"].tag = "changed"
    assert out2["w"].tag == "a"
    assert state["w"].tag == "a"
    out3 = step(out)  # the changed metadata is a new static structure
    assert out3["w"].tag == "changed"
    assert step(out2)["w"].tag == "a"


@pytest.mark.parametrize("clone", [copy.copy, copy.deepcopy, lambda v: pickle.loads(pickle.dumps(v))])
def test_copies_do_not_share_metadata(clone):
    leaves, treedef = jax.tree.flatten([Param(jnp.zeros(2), tag="a")])
    [v] = jax.tree.unflatten(treedef, leaves)
    c = clone(v)
    c.tag = "c"
    v.tag = "v"
    assert c.tag == "c"
    assert v.tag == "v"
    assert _meta(treedef.children()[0]) == {"tag": "a"}
    assert _meta(jax.tree.structure(c)) == {"tag": "c"}


def test_copy_method_and_subclass_init():
    class Tagged(Variable):
        def __init__(self, value):
            self.tag = "early"  # before super().__init__: no metadata dict yet
            super().__init__(value)

    t = Tagged(jnp.zeros(1))
    assert _meta(jax.tree.structure(t)) == {"tag": "early"}
    c = t.copy(tag="late")
    assert _meta(jax.tree.structure(c)) == {"tag": "late"}
    assert _meta(jax.tree.structure(t)) == {"tag": "early"}


def test_equal_but_distinct_metadata_gives_equal_treedefs():
    a = Param(jnp.zeros(2), sharding_names=("x",), tag=[1, 2])
    b = Param(jnp.ones(2), sharding_names=("x",), tag=[1, 2])
    assert a._var_metadata is not b._var_metadata
    ta, tb = jax.tree.structure(a), jax.tree.structure(b)
    assert ta == tb and hash(ta) == hash(tb)
    assert ta == jax.tree.structure(a)  # cached aux compares equal to itself
    assert jax.tree.structure(Param(jnp.zeros(2), tag=[1, 3])) != jax.tree.structure(
        Param(jnp.zeros(2), tag=[1, 2])
    )


def test_cached_aux_is_reused_and_private():
    v = Param(jnp.zeros(2), tag="a")
    aux = _aux(v)
    assert _aux(v) is aux
    assert aux.metadata is not v._var_metadata
    v.tag = "b"
    assert aux.metadata == {"tag": "a"}
    assert _aux(v) is not aux


_names = st.sampled_from(["tag", "sharding_names", "note"])
_values = st.one_of(st.integers(-3, 3), st.text(max_size=2), st.tuples(st.sampled_from(["x", None])))
_ops = st.lists(
    st.tuples(st.sampled_from(["set_attr", "set_metadata", "del", "flatten", "unflatten"]), _names, _values),
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(_ops)
def test_treedefs_always_match_a_fresh_build(ops):
    """Against a model that copies the metadata at every flatten (the uncached behaviour)."""
    v = Param(jnp.zeros(1), tag=0)
    expected = {"tag": 0}
    held = []  # (treedef, the metadata it was built from)
    siblings = []  # (variable, its metadata)
    for op, name, value in ops:
        if op == "set_attr":
            setattr(v, name, value)
            expected[name] = value
        elif op == "set_metadata":
            v.set_metadata(name, value)
            expected[name] = value
        elif op == "del" and name in expected:
            if name == "sharding_names":  # a property without a deleter
                v.del_metadata(name)
            else:
                delattr(v, name)
            del expected[name]
        elif op == "flatten":
            held.append((jax.tree.structure(v), dict(expected)))
        elif op == "unflatten":
            leaves, treedef = jax.tree.flatten(v)
            held.append((treedef, dict(expected)))
            siblings.append((v, dict(expected)))
            v = jax.tree.unflatten(treedef, leaves)
        assert v.get_metadata() == expected
        assert _meta(jax.tree.structure(v)) == expected
        for treedef, meta in held:
            assert _meta(treedef) == meta
        for sib, meta in siblings:
            assert sib.get_metadata() == meta
