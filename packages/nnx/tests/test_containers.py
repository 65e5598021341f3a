"""List, Dict, Sequential: behaviour, paths in State, structure tracking."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from plait import nnx
from plait.core import structure_epoch


def p(value):
    return nnx.Param(jnp.asarray(value, dtype=jnp.float32))


def test_list_is_a_mutable_sequence():
    lst = nnx.List([p(1.0), p(2.0)])
    lst.append(p(3.0))
    lst.insert(0, p(0.0))
    assert [float(v[...]) for v in lst] == [0.0, 1.0, 2.0, 3.0]
    del lst[1]
    assert [float(v[...]) for v in lst] == [0.0, 2.0, 3.0]
    assert [float(v[...]) for v in lst[1:]] == [2.0, 3.0]
    lst[-1] = p(9.0)
    assert float(lst[2][...]) == 9.0 and len(lst) == 3
    lst.extend([p(4.0)])
    assert float(lst.pop()[...]) == 4.0
    lst[0:2] = [p(5.0)]
    assert [float(v[...]) for v in lst] == [5.0, 9.0]
    with pytest.raises(IndexError, match="List index 5 out of range for a List of length 2"):
        lst[5]
    with pytest.raises(TypeError, match="List indices must be integers or slices, not str"):
        lst["a"]
    with pytest.raises(AttributeError, match="List stores items only; cannot set attribute 'name'"):
        lst.name = 1


def test_list_items_have_integer_paths_and_round_trip():
    lst = nnx.List([p([1.0, 2.0]), "static", p(3.0)])
    graphdef, state = nnx.split(lst)
    assert sorted(state.keys()) == [0, 2]
    rebuilt = nnx.merge(graphdef, state)
    assert isinstance(rebuilt, nnx.List) and rebuilt[1] == "static"
    np.testing.assert_array_equal(rebuilt[0][...], [1.0, 2.0])
    # tree mode: a List is a pytree whose children are its data items
    leaves, _ = jax.tree_util.tree_flatten_with_path(lst)
    assert [jax.tree_util.keystr(path) for path, _ in leaves] == ["[0].value", "[2].value"]
    doubled = jax.tree.map(lambda x: 2 * x, lst)
    assert float(doubled[2][...]) == 6.0 and doubled[1] == "static"


def test_list_mutations_bump_the_structure_epoch():
    lst = nnx.List([p(1.0)])
    for mutate in (lambda: lst.append(p(2.0)), lambda: lst.__setitem__(0, p(0.0)), lambda: lst.pop()):
        before = structure_epoch()
        mutate()
        assert structure_epoch() > before
    before = structure_epoch()
    lst[0][...] = 5.0  # a value write is not structural
    assert structure_epoch() == before


def test_list_shares_references():
    shared = p(1.0)
    lst = nnx.List([shared, shared])
    graphdef, state = nnx.split(lst)
    assert list(state.keys()) == [0]
    rebuilt = nnx.merge(graphdef, state)
    assert rebuilt[0] is rebuilt[1]


def test_dict_is_a_mutable_mapping_with_attribute_access():
    d = nnx.Dict({"a": p(1.0)}, b=p(2.0))
    d["c"] = p(3.0)
    assert sorted(d) == ["a", "b", "c"] and len(d) == 3 and "a" in d
    assert d.a is d["a"]
    del d["b"]
    assert sorted(nnx.state(d).keys()) == ["a", "c"]
    with pytest.raises(KeyError, match="'missing'"):
        d["missing"]
    with pytest.raises(TypeError, match="Dict keys must be strings"):
        d[1] = p(0.0)
    assert d == d and d != nnx.Dict(d)  # reference semantics


class AddOne(nnx.Module):
    def __call__(self, x):
        return x + 1


class Split(nnx.Module):
    def __call__(self, x):
        return x, 2 * x


class Combine(nnx.Module):
    def __call__(self, a, b, *, rngs=None):
        self.got_rngs = rngs is not None
        return {"a": a, "b": b}


class Keywords(nnx.Module):
    def __call__(self, a, b):
        return a - b


def test_sequential_chains_outputs_like_flax():
    seq = nnx.Sequential(AddOne(), Split(), Combine(), Keywords())
    rngs = nnx.Rngs(0)
    out = seq(jnp.array(1.0), rngs=rngs)
    assert float(out) == 2.0 - 4.0
    assert seq.layers[2].got_rngs
    assert [type(m).__name__ for m in seq] == ["AddOne", "Split", "Combine", "Keywords"]
    assert sorted(nnx.graphdef(seq).paths) == []  # no state at all


def test_sequential_mixes_modules_and_functions_and_keeps_paths():
    class Scale(nnx.Module):
        def __init__(self):
            self.s = p(3.0)

        def __call__(self, x):
            return x * self.s

    seq = nnx.Sequential(Scale(), jnp.negative, Scale())
    assert float(seq(jnp.array(2.0))) == -18.0
    assert nnx.graphdef(seq).paths == (("layers", 0, "s"), ("layers", 2, "s"))


def test_empty_sequential_returns_its_inputs():
    assert nnx.Sequential()(1) == 1
    assert nnx.Sequential()(1, 2) == (1, 2)
    assert nnx.Sequential()(a=1) == {"a": 1}


def test_sequential_rejects_non_callables():
    with pytest.raises(TypeError, match=r"Sequential.layers\[1\] is a int, which is not callable"):
        nnx.Sequential(AddOne(), 3)(1.0)


def test_structural_changes_inside_nnx_jit_are_written_back():
    class Stack(nnx.Module):
        def __init__(self):
            self.layers = nnx.List([p(1.0)])

        def __call__(self, x):
            self.layers.append(p(2.0))
            self.sow(nnx.Intermediate, "seen", x)
            return x * self.layers[0]

    stack = Stack()
    out = nnx.jit(lambda m, x: m(x))(stack, jnp.array(3.0))
    assert float(out) == 3.0
    assert len(stack.layers) == 2 and float(stack.layers[1][...]) == 2.0
    assert float(stack.seen[...][0]) == 3.0


def test_modules_are_pytrees_for_plain_jax_transforms():
    seq = nnx.Sequential(AddOne(), nnx.Dict(scale=p(2.0)))
    leaves = jax.tree.leaves(seq)
    assert [float(x) for x in leaves] == [2.0]
    doubled = jax.jit(lambda m: jax.tree.map(lambda x: 2 * x, m))(seq)
    assert float(doubled.layers[1]["scale"][...]) == 4.0 and isinstance(doubled.layers[0], AddOne)
