import copy as copy_module

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from plait.core import FrozenDict, freeze, frozen_dict, serialization, unfreeze


def test_nested_dicts_are_frozen_and_lookup_works():
    fd = freeze({"a": {"b": 1}, "c": 2})
    assert isinstance(fd["a"], FrozenDict)
    assert fd["a"]["b"] == 1 and len(fd) == 2 and "c" in fd and "z" not in fd
    assert fd.get("z", 5) == 5
    assert list(fd) == ["a", "c"]


def test_immutable_and_copy_does_not_alias_input():
    source = {"a": {"b": 1}}
    fd = freeze(source)
    source["a"]["b"] = 99
    assert fd["a"]["b"] == 1
    with pytest.raises(ValueError, match="FrozenDict is immutable: cannot set key 'a'"):
        fd["a"] = 2


def test_equality_and_hash():
    a = freeze({"x": 1, "y": {"z": 2}})
    b = FrozenDict(y={"z": 2}, x=1)
    assert a == b and hash(a) == hash(b)
    assert a == {"x": 1, "y": {"z": 2}}
    assert a != freeze({"x": 1})
    assert len({a, b}) == 1
    with pytest.raises(TypeError, match="unhashable"):
        hash(freeze({"x": [1]}))


def test_copy_pop_unfreeze_methods():
    fd = freeze({"a": 1, "b": {"c": 2}})
    updated = fd.copy({"a": 10, "d": {"e": 3}})
    assert isinstance(updated["d"], FrozenDict)
    assert unfreeze(updated) == {"a": 10, "b": {"c": 2}, "d": {"e": 3}}
    assert fd["a"] == 1  # unchanged
    rest, value = fd.pop("b")
    assert value == freeze({"c": 2}) and rest == {"a": 1} and isinstance(rest, FrozenDict)
    with pytest.raises(KeyError, match="missing"):
        fd.pop("missing")
    plain = fd.unfreeze()
    assert type(plain) is dict and type(plain["b"]) is dict
    plain["b"]["c"] = 5
    assert fd["b"]["c"] == 2


def test_module_level_helpers_on_dict_and_frozendict():
    d = {"a": 1, "b": {"c": 2}}
    new, value = frozen_dict.pop(d, "a")
    assert (new, value) == ({"b": {"c": 2}}, 1) and d["a"] == 1
    assert frozen_dict.copy(d, {"z": 0}) == {"a": 1, "b": {"c": 2}, "z": 0}
    assert type(frozen_dict.copy(d)) is dict
    assert isinstance(frozen_dict.copy(freeze(d), {"z": 0}), FrozenDict)
    assert unfreeze(5) == 5
    with pytest.raises(TypeError, match="copy expects a FrozenDict or dict, got list"):
        frozen_dict.copy([1])
    with pytest.raises(TypeError, match="pop expects a FrozenDict or dict, got int"):
        frozen_dict.pop(3, "a")


def test_pretty_repr():
    fd = freeze({"a": 1, "b": {"c": "x"}, "e": {}})
    expected = "FrozenDict({\n    a: 1,\n    b: {\n        c: 'x',\n    },\n    e: {},\n})"
    assert repr(fd) == expected
    assert frozen_dict.pretty_repr({"a": {"b": 1}}, num_spaces=2) == "{\n  a: {\n    b: 1,\n  },\n}"
    assert frozen_dict.pretty_repr(3) == "3"
    assert repr(freeze({"a": 1}).keys()) == "frozen_dict_keys(['a'])"
    assert repr(freeze({"a": 1}).values()) == "frozen_dict_values([1])"


def test_pytree_with_sorted_dict_key_paths():
    fd = freeze({"b": jnp.ones(2), "a": {"c": 3}})
    flat = jax.tree_util.tree_flatten_with_path(fd)[0]
    assert [jax.tree_util.keystr(p) for p, _ in flat] == ["['a']['c']", "['b']"]
    assert fd.tree_flatten_with_keys()[1] == ("a", "b")
    mapped = jax.tree.map(lambda x: x * 2, fd)
    assert isinstance(mapped, FrozenDict) and isinstance(mapped["a"], FrozenDict)
    assert mapped["a"]["c"] == 6
    out = jax.jit(lambda t: t["b"] + t["a"]["c"])(fd)
    np.testing.assert_allclose(out, [4.0, 4.0])


def test_tree_unflatten_classmethod():
    fd = FrozenDict.tree_unflatten(("a", "b"), (1, {"c": 2}))
    assert fd == {"a": 1, "b": {"c": 2}} and isinstance(fd["b"], FrozenDict)


def test_copy_module_round_trip():
    fd = freeze({"a": {"b": [1, 2]}})
    deep = copy_module.deepcopy(fd)
    assert deep == fd and isinstance(deep, FrozenDict) and deep["a"]["b"] is not fd["a"]["b"]


def test_serialization():
    fd = freeze({"w": np.arange(3.0), "sub": {"b": np.float32(2)}})
    state = serialization.to_state_dict(fd)
    assert type(state) is dict and type(state["sub"]) is dict
    back = serialization.from_bytes(fd, serialization.to_bytes(fd))
    assert isinstance(back, FrozenDict)
    np.testing.assert_array_equal(back["w"], np.arange(3.0))
    with pytest.raises(
        serialization.StateDictMismatchError, match=r"missing from the state: \['sub'\]"
    ):
        serialization.from_state_dict(fd, {"w": np.arange(3.0)})
