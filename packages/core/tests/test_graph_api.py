"""Graph API beyond split/merge: integer keys, pop in containers, modes, helpers from Flax's graphlib/statelib."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from plait.core import (
    GraphDef,
    GraphError,
    GraphNodeImpl,
    Intermediate,
    Object,
    Param,
    PathIn,
    PytreeNodeImpl,
    Rngs,
    SplitBackups,
    State,
    StreamBackup,
    TraceContextError,
    Variable,
    check_trace,
    create_path_filters,
    current_trace_state,
    diff,
    filters_to_predicates,
    freeze_static,
    get_node_impl,
    get_node_impl_for_type,
    graph_pop,
    is_node_leaf,
    is_node_type,
    is_pytree_node,
    jax_to_nnx_path,
    merge,
    pop,
    register_pytree_node_type,
    set_graph_updates,
    split,
    split_rngs,
    state,
    structure_epoch,
    thaw_static,
    track,
    update,
)


class Items(Object):
    """Holds its items under integer keys, as nnx.List does."""

    def __init__(self, *items):
        for i, item in enumerate(items):
            self.__dict__[i] = track(item)


class Holder(Object):
    def __init__(self):
        self.items = Items(Param(jnp.zeros(1)), jnp.ones(2))


# -- integer keys ---------------------------------------------------------------------------------


def test_update_adds_an_integer_keyed_item_and_bumps_the_epoch():
    holder = Holder()
    before = structure_epoch()
    update(holder, State({"items": {2: Param(jnp.full((3,), 4.0))}}))
    assert structure_epoch() > before
    assert isinstance(holder.items.__dict__[2], Param)
    assert float(holder.items.__dict__[2][...][0]) == 4.0
    assert state(holder).flat_state().paths == (("items", 0), ("items", 1), ("items", 2))


def test_update_replaces_a_bare_array_item_under_an_integer_key():
    holder = Holder()
    update(holder, State({"items": {1: jnp.full((2,), 9.0)}}))
    np.testing.assert_array_equal(holder.items.__dict__[1], np.full((2,), 9.0))


def test_update_writes_an_existing_integer_keyed_variable_in_place():
    holder = Holder()
    param = holder.items.__dict__[0]
    update(holder, State({"items": {0: Param(jnp.full((1,), 2.0))}}))
    assert holder.items.__dict__[0] is param and float(param[...][0]) == 2.0


def test_integer_key_writes_are_trace_checked():
    holder = Holder()
    new_item = State({"items": {5: Param(jnp.ones(1))}})

    @jax.jit
    def inside(x):
        update(holder, new_item)
        return x

    with pytest.raises(TraceContextError, match="Items"):
        inside(1.0)


def test_pop_removes_integer_keyed_variables():
    holder = Holder()
    holder.items.__dict__[2] = Intermediate(jnp.ones(1))
    popped = pop(holder, Intermediate)
    assert list(popped["items"]) == [2]
    assert sorted(holder.items.__dict__) == [0, 1]


def test_pop_removes_variables_inside_lists_dicts_and_tuples():
    class Model(Object):
        def __init__(self):
            self.acts = [Intermediate(jnp.zeros(1)), Param(jnp.ones(1)), Intermediate(jnp.ones(2))]
            self.table = {"h": Intermediate(jnp.zeros(3)), "w": Param(jnp.ones(3))}
            self.pair = (Intermediate(jnp.zeros(4)), 7)
            self.sub = [{"deep": Intermediate(jnp.zeros(5))}]

    model = Model()
    param = model.acts[1]
    popped = pop(model, Intermediate)
    assert popped.flat_state().paths == (
        ("acts", 0), ("acts", 2), ("pair", 0), ("sub", 0, "deep"), ("table", "h"),
    )
    assert model.acts == [param] and list(model.table) == ["w"] and model.pair == (7,)
    assert model.sub == [{}]


def test_pop_shared_variable_goes_to_the_first_filter_and_leaves_everywhere():
    class Model(Object):
        def __init__(self):
            self.h = Intermediate(jnp.zeros(1))
            self.again = [self.h]

    model = Model()
    first, second = graph_pop(model, (Intermediate, ...))
    assert first.flat_state().paths == (("again", 0),) and len(second) == 0  # its first path
    assert "h" not in vars(model) and model.again == []


def test_pop_from_a_tuple_root_holding_variables_directly_is_an_error():
    with pytest.raises(GraphError, match="tuple"):
        pop((Intermediate(jnp.ones(1)),), Intermediate)


# -- modes ----------------------------------------------------------------------------------------


def test_set_graph_updates_default_context_and_decorator():
    assert set_graph_updates.get_default() is True
    with set_graph_updates(False):
        assert set_graph_updates.get_default() is False
        assert set_graph_updates.get_stack()[-2:] == [True, False]
    assert set_graph_updates.get_default() is True

    @set_graph_updates(False)
    def inside():
        return set_graph_updates.get_default()

    assert set_graph_updates.get_default() is True
    assert inside() is False and set_graph_updates.get_default() is True


# -- graphlib / statelib / filterlib helpers ------------------------------------------------------


def test_node_predicates():
    assert is_node_leaf(Param(1)) and is_node_leaf(jnp.ones(1)) and is_node_leaf(np.ones(1))
    assert not is_node_leaf(1) and not is_node_leaf([jnp.ones(1)])
    assert is_pytree_node([1]) and is_pytree_node({"a": 1}) and is_pytree_node((1,))
    assert not is_pytree_node(Rngs(0)) and is_pytree_node(Rngs(0), check_graph_registry=False)
    assert not is_pytree_node(jnp.ones(1)) and not is_pytree_node(Param(1)) and not is_pytree_node(None)
    assert is_node_type(Rngs) and is_node_type(dict) and not is_node_type(int)


def test_jax_to_nnx_path_converts_every_key_kind():
    ku = jax.tree_util
    path = (ku.DictKey("a"), ku.SequenceKey(2), ku.GetAttrKey("w"), ku.FlattenedIndexKey(1))
    assert jax_to_nnx_path(path) == ("a", 2, "w", 1)
    leaf_paths = [p for p, _ in jax.tree_util.tree_leaves_with_path({"x": [Param(jnp.ones(1))]})]
    assert jax_to_nnx_path(leaf_paths[0]) == ("x", 0, "value")


def test_node_impls():
    graph_impl = get_node_impl(Rngs(0))
    assert isinstance(graph_impl, GraphNodeImpl)
    keys = [k for k, _ in graph_impl.flatten(Rngs(0))[0]]
    assert keys == ["default"]
    list_impl = get_node_impl_for_type(list)
    assert isinstance(list_impl, PytreeNodeImpl)
    items, aux = list_impl.flatten([5, 6])
    assert list(items) == [(0, 5), (1, 6)] and list_impl.unflatten(items, aux) == [5, 6]
    assert get_node_impl(jnp.ones(1)) is None and get_node_impl(Param(1)) is None
    assert get_node_impl(3) is None

    from plait.core.frozen_dict import FrozenDict

    frozen = get_node_impl(FrozenDict({"a": 1}))
    assert isinstance(frozen, PytreeNodeImpl) and frozen.set_key is None
    items, aux = frozen.flatten(FrozenDict({"a": 1}))
    assert frozen.unflatten(items, aux) == FrozenDict({"a": 1})


def test_register_pytree_node_type_joins_split_merge_and_jax():
    class Pair:
        def __init__(self, first, second):
            self.first, self.second = first, second

    register_pytree_node_type(
        Pair,
        flatten=lambda p: ([("first", p.first), ("second", p.second)], "aux"),
        unflatten=lambda items, aux: Pair(*(v for _, v in items)),
    )

    class Model(Object):
        def __init__(self):
            self.pair = Pair(Param(jnp.ones(1)), 3)

    model = Model()
    graphdef_, st_ = split(model)
    assert st_.flat_state().paths == (("pair", "first"),)
    new = merge(graphdef_, st_)
    assert isinstance(new.pair, Pair) and new.pair.second == 3
    assert isinstance(get_node_impl(model.pair), PytreeNodeImpl)
    paths = [jax_to_nnx_path(p) for p, _ in jax.tree_util.tree_leaves_with_path(model.pair)]
    assert paths == [("first", "value"), ("second",)]


def test_path_in_and_filters_to_predicates():
    only = PathIn(("a", 0), ("b",))
    assert only(("b",), None) and only(["a", 0], None) and not only(("a",), None)
    assert only == PathIn(("b",), ("a", 0)) and hash(only) == hash(PathIn(("b",), ("a", 0)))
    assert repr(PathIn(("b",))) == "PathIn(('b',))"

    class Model(Object):
        def __init__(self):
            self.a = [Param(jnp.ones(1)), Param(jnp.ones(2))]
            self.b = Param(jnp.ones(3))

    picked, rest = split(Model(), only, ...)[1:]
    assert picked.flat_state().paths == (("a", 0), ("b",)) and rest.flat_state().paths == (("a", 1),)
    predicates = filters_to_predicates([Param, "params", ...])
    assert len(predicates) == 3 and predicates[0]((), Param(1)) and predicates[2]((), None)


def test_create_path_filters_and_diff():
    st_ = State({"a": Param(1), "b": {"c": 1, "d": 2}})
    filters = create_path_filters(st_)
    assert filters == {PathIn(("a",), ("b", "c")): 1, PathIn(("b", "d")): 2}
    remaining = diff(st_, State({"b": {"c": 0}}))
    assert remaining.flat_state().paths == (("a",), ("b", "d"))
    assert diff(st_, State({})) is st_


# -- exported helpers for containers (what nnx.List and nnx.rnglib use) ---------------------------


def test_track_and_check_trace_and_trace_state():
    tracked = track([{"a": [1]}])
    assert type(tracked).__name__ == "TrackedList" and type(tracked[0]).__name__ == "TrackedDict"
    before = structure_epoch()
    tracked[0]["b"] = 2
    assert structure_epoch() > before
    obj = Items()
    check_trace(obj, 0)  # same (eager) trace: fine
    token = current_trace_state()
    assert token == current_trace_state()

    @jax.jit
    def inside(x):
        assert current_trace_state() != token
        check_trace(obj, 3)
        return x

    with pytest.raises(TraceContextError, match="Items"):
        inside(1.0)


def test_freeze_static_and_thaw_static():
    frozen = freeze_static(([1], "a"))
    hash(frozen)
    assert thaw_static(frozen) == ([1], "a")
    assert freeze_static(3) == 3


def test_rng_backups_are_exported():
    rngs = Rngs(0)
    backups = split_rngs(rngs, splits=2)
    assert isinstance(backups, SplitBackups) and isinstance(backups[0], StreamBackup)
    backups.__exit__(None, None, None)
    assert rngs.default.key.shape == ()


def test_graphdef_types_are_public():
    assert isinstance(split(Holder())[0], GraphDef)
    assert issubclass(Param, Variable)
