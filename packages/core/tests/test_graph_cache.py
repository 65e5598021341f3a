"""The flatten cache: split/state/graphdef reuse a pass while the structure epoch is unchanged.

The reference for "what a fresh pass gives" is ``flatten(node, ref_index={})``: passing a
``ref_index`` always flattens anew.
"""

import gc
import weakref

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from plait.core import (
    BatchStat,
    GraphDef,
    Object,
    Param,
    State,
    Variable,
    bump_structure_epoch,
    flatten,
    graphdef,
    iter_graph,
    merge,
    register_graph_node_type,
    set_metadata,
    split,
    state,
    structure_epoch,
    unflatten,
)


class Linear(Object):
    def __init__(self, n=2):
        self.w = Param(jnp.ones((n, n)))
        self.b = Param(jnp.zeros(n))
        self.n = n


class Net(Object):
    def __init__(self):
        self.layers = [Linear(), Linear()]
        self.stats = BatchStat(jnp.zeros(2))


def fresh_graphdef(node):
    return flatten(node, ref_index={})[0]


def test_unchanged_structure_reuses_the_graphdef_and_reads_current_values():
    net = Net()
    first = graphdef(net)
    assert graphdef(net) is first
    net.layers[0].w[...] = jnp.full((2, 2), 7.0)  # a value write is not structural
    _, st_ = split(net)
    assert graphdef(net) is first
    assert float(st_["layers"][0]["w"][...][0, 0]) == 7.0


@pytest.mark.parametrize(
    "mutate",
    [
        lambda net: setattr(net, "extra", Param(jnp.ones(1))),
        lambda net: setattr(net.layers[0], "n", 5),
        lambda net: delattr(net, "stats"),
        lambda net: net.layers.append(Linear(3)),
        lambda net: net.layers.pop(),
        lambda net: setattr(net.layers[1], "w", Param(jnp.ones((2, 2)))),
        lambda net: net.layers[0].w.set_metadata(sharding_names=("a", "b")),
        lambda net: setattr(net.layers[0].b, "tag", "bias"),
        lambda net: set_metadata(net, only=BatchStat, note=1),
    ],
    ids=["add", "static", "delete", "append", "pop", "replace-variable", "set_metadata",
         "metadata-attribute", "set_metadata-graph"],
)
def test_structural_changes_are_seen(mutate):
    net = Net()
    before = graphdef(net)
    mutate(net)
    after = graphdef(net)
    assert after is not before
    assert after == fresh_graphdef(net)
    graphdef_, st_ = split(net)
    assert graphdef_ == fresh_graphdef(net)
    assert state(net).flat_state().paths == flatten(net, ref_index={})[1].paths


def test_metadata_change_bumps_the_epoch_but_copy_from_equal_metadata_does_not():
    p = Param(jnp.ones(1), tag="a")
    before = structure_epoch()
    p.copy_from(Param(jnp.zeros(1), tag="a"))
    assert structure_epoch() == before and float(p[...][0]) == 0.0
    p.copy_from(Param(jnp.zeros(1), tag="b"))
    assert structure_epoch() > before and p.tag == "b"
    before = structure_epoch()
    del p.tag
    assert structure_epoch() > before


def test_write_past_setattr_is_seen_after_bump_structure_epoch():
    net = Net()
    graphdef(net)
    net.__dict__["late"] = Param(jnp.ones(3))
    bump_structure_epoch()
    assert "late" in state(net)


def test_graphs_holding_untracked_containers_are_flattened_every_time():
    net = Net()
    net.__dict__["table"] = {"a": Param(jnp.ones(1))}  # a plain dict, past __setattr__
    bump_structure_epoch()
    assert sorted(state(net)["table"]) == ["a"]
    net.table["b"] = Param(jnp.ones(2))  # not tracked: no epoch bump, still seen
    assert sorted(state(net)["table"]) == ["a", "b"]


def test_registered_node_types_are_flattened_every_time():
    class Bag:
        def __init__(self):
            self.items = {}

    register_graph_node_type(
        Bag,
        flatten=lambda b: (sorted(b.items.items()), None),
        set_key=lambda b, k, v: b.items.__setitem__(k, v),
        pop_key=lambda b, k: b.items.pop(k),
        create_empty=lambda _: Bag(),
        clear=lambda b: b.items.clear(),
    )
    holder = Net()
    holder.bag = Bag()
    holder.bag.items["w"] = Param(jnp.ones(1))
    assert list(state(holder)["bag"]) == ["w"]
    holder.bag.items["v"] = Param(jnp.ones(1))  # the registry type does not bump the epoch
    assert sorted(state(holder)["bag"]) == ["v", "w"]


def test_tuple_roots_are_cached_per_member_identity():
    a, b = Linear(), Linear(3)
    first = graphdef((a, b))
    assert graphdef((a, b)) is first
    assert graphdef((b, a)) is not first and graphdef((b, a)) != first
    b.n = 4
    assert graphdef((a, b)) == fresh_graphdef((a, b)) != first


def test_the_cache_does_not_keep_a_dropped_model_alive():
    net = Net()
    split(net)
    split(net)
    kernel = weakref.ref(net.layers[0].w)
    root = weakref.ref(net)
    del net
    gc.collect()
    assert root() is None and kernel() is None


def test_the_cache_does_not_keep_dropped_variables_alive_after_a_structure_change():
    net = Net()
    split(net)
    old = weakref.ref(net.layers[0].w)
    net.layers[0].w = Param(jnp.zeros((2, 2)))
    gc.collect()
    assert old() is None
    assert float(state(net)["layers"][0]["w"][...][0, 0]) == 0.0


def test_state_copies_are_independent_of_the_model_and_of_each_other():
    net = Net()
    s1, s2 = state(net), state(net)
    assert s1["stats"] is not net.stats and s1["stats"] is not s2["stats"]
    s1["stats"][...] = jnp.ones(2)
    s1["stats"].set_metadata(note="only here")
    assert float(net.stats[...][0]) == 0.0 and not net.stats.has_metadata("note")
    assert float(state(net)["stats"][...][0]) == 0.0


def test_cached_filter_groups_follow_registry_and_value_predicates():
    net = Net()
    params, rest = state(net, Param, ...)
    assert sorted(params) == ["layers"] and sorted(rest) == ["stats"]
    again = state(net, Param, ...)
    assert sorted(again[0]) == ["layers"]

    def positive(path, x):  # looks at values: never cached
        return isinstance(x, Variable) and float(jnp.sum(x[...])) > 0

    assert sorted(state(net, positive)) == ["layers"]  # the kernels are ones
    net.stats[...] = jnp.ones(2)
    assert sorted(state(net, positive)) == ["layers", "stats"]


def test_merge_leaves_the_epoch_alone_and_refilling_bumps_it():
    net = Net()
    graphdef_, st_ = split(net)
    before = structure_epoch()
    merge(graphdef_, st_)
    assert structure_epoch() == before
    ref_index = {}
    graphdef_, leaves = flatten(net, with_paths=False, ref_index=ref_index)
    objects = {id(value): value for _, value in iter_graph(net)}
    index_ref = {index: objects[obj_id] for obj_id, index in ref_index.items()}
    unflatten(graphdef_, [jnp.full(leaf.shape, 3.0) for leaf in leaves], index_ref=index_ref)
    assert structure_epoch() > before
    assert float(net.layers[1].w[...][0, 0]) == 3.0


def test_merge_of_several_states_later_ones_win():
    net = Net()
    graphdef_, params, rest = split(net, Param, ...)
    override = State({"stats": BatchStat(jnp.full((2,), 5.0))})
    new = merge(graphdef_, params, rest, override)
    assert float(new.stats[...][0]) == 5.0
    assert new.layers[0].w is params["layers"][0]["w"]


def test_merge_mismatches_name_the_paths():
    from plait.core import StateMismatchError

    net = Net()
    graphdef_, params, rest = split(net, Param, ...)
    with pytest.raises(StateMismatchError, match=r"missing from the state, e\.g\. \('stats',\)"):
        merge(graphdef_, params)
    extra = State({"bogus": Param(jnp.ones(1))})
    with pytest.raises(StateMismatchError, match=r"unknown to the GraphDef, e\.g\. \('bogus',\)"):
        merge(graphdef_, params, rest, extra)
    nested_where_leaf = State({"stats": {"x": BatchStat(jnp.ones(1))}})
    with pytest.raises(StateMismatchError, match="stats"):
        merge(graphdef_, params, nested_where_leaf)


def test_merge_ignores_empty_subtrees():
    net = Net()
    graphdef_, st_ = split(net)
    padded = State({**st_.raw_mapping, "nothing": {}})
    assert float(merge(graphdef_, padded).layers[0].w[...][0, 0]) == 1.0


def test_merging_twice_from_one_graphdef_gives_independent_graphs():
    net = Net()
    graphdef_, st_ = split(net)
    a = merge(graphdef_, st_, copy=True)
    b = merge(graphdef_, st_, copy=True)
    assert a.layers[0] is not b.layers[0] and a.layers[0].w is not b.layers[0].w
    a.layers[0].n = 9
    assert b.layers[0].n == 2 and graphdef(b) == graphdef_


def test_graphdef_is_a_leafless_pytree_and_jit_can_return_it():
    net = Net()
    graphdef_, st_ = split(net)
    assert jax.tree.leaves(graphdef_) == []
    assert jax.tree.map(lambda x: x, graphdef_) is graphdef_

    @jax.jit
    def step(st):
        model = merge(graphdef_, st)
        model.stats[...] = model.stats[...] + 1
        return split(model)

    out_graphdef, out_state = step(st_)
    assert isinstance(out_graphdef, GraphDef) and out_graphdef == graphdef_
    assert float(out_state["stats"][...][0]) == 1.0


hyp_values = st.lists(
    st.sampled_from(["set", "static", "del", "append", "pop", "metadata", "value"]), min_size=1, max_size=8
)


@settings(max_examples=40, deadline=None)
@given(hyp_values)
def test_random_edit_sequences_match_a_fresh_flatten(edits):
    net = Net()
    for i, edit in enumerate(edits):
        graphdef(net)  # populate the cache before each edit
        if edit == "set":
            setattr(net, f"p{i % 3}", Param(jnp.full((1,), float(i))))
        elif edit == "static" and net.layers:
            net.layers[0].n = i
        elif edit == "del" and "stats" in vars(net):
            del net.stats
        elif edit == "append":
            net.layers.append(Linear(1))
        elif edit == "pop" and net.layers:
            net.layers.pop()
        elif edit == "metadata" and net.layers:
            net.layers[-1].b.set_metadata(step=i)
        elif edit == "value" and net.layers:
            net.layers[-1].b[...] = np.full(net.layers[-1].b.shape, float(i))
        assert graphdef(net) == fresh_graphdef(net)
        cached = state(net).flat_state()
        fresh = flatten(net, ref_index={})[1]
        assert cached.paths == fresh.paths
        for a, b in zip(cached.leaves, fresh.leaves, strict=True):
            np.testing.assert_array_equal(np.asarray(a[...]), np.asarray(b[...]))


@pytest.mark.parametrize("module", ["_graph_traverse", "_graph_modes"])
def test_docstring_examples(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(f"plait.core.{module}"))
    assert result.attempted > 0 and result.failed == 0


def test_immutable_pytrees_keep_a_graph_cacheable_and_mutable_ones_do_not():
    from plait.core import struct
    from plait.core.frozen_dict import FrozenDict

    @struct.dataclass
    class Frozen:
        w: Param

    class Mutable:
        def __init__(self, w):
            self.w = w

    jax.tree_util.register_pytree_node(Mutable, lambda m: ((m.w,), None), lambda _, c: Mutable(c[0]))

    holder = Net()
    holder.frozen = Frozen(Param(jnp.ones(1)))
    holder.table = FrozenDict({"a": Param(jnp.ones(1))})
    assert graphdef(holder) is graphdef(holder)  # cached: nothing inside can change unseen
    holder.box = Mutable(Param(jnp.ones(1)))
    first = graphdef(holder)
    holder.box.w = Param(jnp.ones(2), tag="new")  # invisible to the epoch, seen anyway
    assert graphdef(holder) is not first and graphdef(holder) == fresh_graphdef(holder)
