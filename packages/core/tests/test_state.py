import jax
import jax.numpy as jnp
import pytest
from plait.core import (
    BatchStat,
    FilterError,
    FlatState,
    Param,
    State,
    filter_state,
    from_flat_state,
    map_state,
    merge_state,
    replace_by_pure_dict,
    restore_int_paths,
    split_state,
    to_flat_state,
    to_pure_dict,
)


def make():
    return State({
        "linear": {"kernel": Param(jnp.ones((2, 2))), "bias": Param(jnp.zeros(2))},
        "bn": {"mean": BatchStat(jnp.zeros(2))},
        "layers": {0: {"w": Param(jnp.ones(1))}, 1: {"w": Param(jnp.ones(1))}},
    })


def test_access_forms():
    s = make()
    assert s.linear.kernel.shape == (2, 2)
    assert s["linear"]["bias"].shape == (2,)
    assert isinstance(s.linear, State) and "kernel" in s.linear and len(s) == 3
    s.extra = Param(1.0)
    assert "extra" in s
    del s.extra
    assert "extra" not in s
    with pytest.raises(AttributeError, match="State has no key 'nope'"):
        _ = s.nope


def test_pytree_paths():
    s = make()
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(s)]
    assert paths[0] == "['bn']['mean'].value"
    assert "['layers'][0]['w'].value" in paths
    doubled = jax.tree.map(lambda x: x * 2, s)
    assert isinstance(doubled, State) and type(doubled.linear.kernel) is Param
    assert float(doubled.linear.kernel.sum()) == 8.0


def test_flat_state():
    s = make()
    flat = s.flat_state()
    assert isinstance(flat, FlatState)
    assert flat.paths == (("bn", "mean"), ("layers", 0, "w"), ("layers", 1, "w"), ("linear", "bias"), ("linear", "kernel"))
    assert len(flat.leaves) == 5 and flat[0][0] == ("bn", "mean")
    assert isinstance(flat[1:3], FlatState) and len(flat[1:3]) == 2
    assert to_flat_state(s) == flat
    back = flat.to_nested_state()
    assert back == s
    assert State.from_flat_path(dict(flat)) == s
    assert from_flat_state(list(flat)) == s


def test_flat_state_sort_split_filter_merge():
    fs = FlatState([(("b",), Param(1.0)), (("a",), BatchStat(2.0))], sort=True)
    assert fs.paths == (("a",), ("b",))
    params, stats = fs.split(Param, BatchStat)
    assert params.paths == (("b",),) and stats.paths == (("a",),)
    assert fs.filter(Param).paths == (("b",),)
    with pytest.raises(FilterError, match="matched none of the filters"):
        fs.split(Param)
    merged = FlatState.merge(params, stats)
    assert merged.paths == fs.paths
    leaves, _ = jax.tree.flatten(fs)
    assert leaves == [2.0, 1.0]


def test_filter_split_merge():
    s = make()
    params = filter_state(s, Param)
    assert "bn" not in params and "linear" in params
    params, stats = split_state(s, Param, BatchStat)
    assert list(stats) == ["bn"]
    with pytest.raises(FilterError, match=r"path \('bn', 'mean'\) \(BatchStat\)"):
        split_state(s, Param)
    merged = merge_state(params, stats)
    assert merged == s
    assert State.merge(params, stats) == s
    assert (params | stats) == s
    assert s.split(Param, ...)[0] == params
    assert s.filter(BatchStat) == stats


def test_sub_removes_paths():
    s = make()
    params = filter_state(s, Param)
    rest = s - params
    assert rest == filter_state(s, BatchStat)


def test_merge_later_wins():
    a = State({"x": {"y": 1, "z": 2}})
    b = State({"x": {"y": 3}})
    assert merge_state(a, b).to_pure_dict() == {"x": {"y": 3, "z": 2}}


def test_map_state():
    s = make()
    paths = []
    mapped = map_state(lambda p, v: paths.append(p) or v.replace(v[...] + 1), s)
    assert float(mapped.linear.bias.sum()) == 2.0 and len(paths) == 5
    assert s.map(lambda p, v: 0).bn.mean == 0


def test_pure_dict_roundtrip():
    s = make()
    pure = to_pure_dict(s)
    assert set(pure) == {"linear", "bn", "layers"} and pure["layers"][0]["w"].shape == (1,)
    assert not isinstance(pure["linear"]["kernel"], Param)
    pure["linear"]["kernel"] = jnp.zeros((2, 2))
    replace_by_pure_dict(s, pure)
    assert type(s.linear.kernel) is Param and float(s.linear.kernel.sum()) == 0.0


def test_replace_by_pure_dict_string_int_keys_and_errors():
    s = make()
    replace_by_pure_dict(s, {"layers": {"0": {"w": jnp.full(1, 5.0)}}})
    assert float(s.layers[0].w[...][0]) == 5.0
    with pytest.raises(FilterError, match=r"has the path \('nope',\)"):
        replace_by_pure_dict(s, {"nope": 1})
    assert restore_int_paths({"0": {"a": 1}, "b": 2}) == {0: {"a": 1}, "b": 2}


def test_repr():
    text = repr(make())
    assert text.startswith("State({") and "'kernel': Param(" in text
