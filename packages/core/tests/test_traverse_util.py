import collections
import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
from plait.core import freeze, traverse_util
from plait.core.traverse_util import empty_node, flatten_dict, unflatten_dict

NESTED = {"a": {"b": 1, "c": {"d": 2}}, "e": 3}


def test_flatten_tuple_and_sep_keys():
    assert flatten_dict(NESTED) == {("a", "b"): 1, ("a", "c", "d"): 2, ("e",): 3}
    assert flatten_dict(freeze(NESTED), sep="/") == {"a/b": 1, "a/c/d": 2, "e": 3}


def test_round_trip():
    assert unflatten_dict(flatten_dict(NESTED)) == NESTED
    assert unflatten_dict(flatten_dict(NESTED, sep="."), sep=".") == NESTED


def test_empty_nodes():
    tree = {"a": {}, "b": {"c": {}}, "d": 1}
    assert flatten_dict(tree) == {("d",): 1}
    flat = flatten_dict(tree, keep_empty_nodes=True)
    assert flat == {("a",): empty_node, ("b", "c"): empty_node, ("d",): 1}
    assert unflatten_dict(flat) == tree
    assert flatten_dict({}, keep_empty_nodes=True) == {}
    assert repr(empty_node) == "empty_node"


def test_is_leaf_keeps_subtrees_whole():
    flat = flatten_dict(NESTED, is_leaf=lambda path, x: path == ("a", "c"))
    assert flat == {("a", "b"): 1, ("a", "c"): {"d": 2}, ("e",): 3}


def test_errors():
    with pytest.raises(TypeError, match="flatten_dict expects a dict or FrozenDict, got list"):
        flatten_dict([1])
    with pytest.raises(TypeError, match="unflatten_dict expects a dict, got list"):
        unflatten_dict([1])
    with pytest.raises(ValueError, match="already a leaf"):
        unflatten_dict({("a",): 1, ("a", "b"): 2})


def test_path_aware_map():
    params = {"dense": {"kernel": jnp.ones(2), "bias": jnp.ones(2)}, "empty": {}}
    out = traverse_util.path_aware_map(lambda path, x: x * 0 if path[-1] == "kernel" else x, params)
    np.testing.assert_array_equal(out["dense"]["kernel"], [0, 0])
    np.testing.assert_array_equal(out["dense"]["bias"], [1, 1])
    assert out["empty"] == {}


@pytest.fixture
def quiet_deprecation():
    with pytest.warns(DeprecationWarning, match="Traversal is deprecated"):
        yield


def test_model_param_traversal(quiet_deprecation):
    params = freeze({"dense": {"kernel": 2, "bias": 3}, "out": {"kernel": 4}})
    kernels = traverse_util.ModelParamTraversal(lambda path, _: path.endswith("/kernel"))
    assert list(kernels.iterate(params)) == [2, 4]
    updated = kernels.update(lambda x: -x, params)
    assert updated == {"dense": {"kernel": -2, "bias": 3}, "out": {"kernel": -4}}
    assert type(updated).__name__ == "FrozenDict"
    assert kernels.set([7, 8], params) == {"dense": {"kernel": 7, "bias": 3}, "out": {"kernel": 8}}
    with pytest.raises(ValueError, match="got 1 values but the traversal selects more"):
        kernels.set([7], params)
    with pytest.raises(ValueError, match="got 3 values but the traversal selects only 2"):
        kernels.set([7, 8, 9], params)


Pair = collections.namedtuple("Pair", ["left", "right"])


@dataclasses.dataclass(frozen=True)
class Box:
    content: object


def test_composed_traversals(quiet_deprecation):
    t = traverse_util.TraverseId()
    data = {"xs": [1, 2, 3], "pair": Pair(10, 20)}
    assert t["xs"].each().update(lambda x: x + 1, data)["xs"] == [2, 3, 4]
    assert list(t["xs"].each().filter(lambda x: x > 1).iterate(data)) == [2, 3]
    assert t["pair"].right.update(lambda x: 0, data)["pair"] == Pair(10, 0)
    assert t["pair"][0].update(lambda x: -1, data)["pair"] == Pair(-1, 20)
    assert data["xs"] == [1, 2, 3]  # inputs are never modified
    merged = t["xs"][0].merge(t["xs"][2])
    assert merged.update(lambda x: 0, data)["xs"] == [0, 2, 0]
    assert list(t.tree().iterate(Box((1, [2])).content)) == [1, 2]
    assert t.content.update(lambda x: x * 2, Box(4)) == Box(8)
    assert list(t["xs"][1:].iterate(data)) == [2, 3]
    with pytest.raises(ValueError, match="list or tuple, got dict"):
        traverse_util.TraverseEach().update(lambda x: x, {"a": 1})
