import jax
import jax.numpy as jnp
import numpy as np
import pytest
from plait.core import (
    BatchStat,
    FilterError,
    FlatState,
    GraphDef,
    GraphError,
    Intermediate,
    Object,
    Param,
    State,
    StateMismatchError,
    Variable,
    bump_structure_epoch,
    clone,
    find_duplicates,
    flatten,
    graphdef,
    is_graph_node,
    is_node,
    iter_graph,
    merge,
    pop,
    register_graph_node_type,
    split,
    state,
    unflatten,
    update,
    variables,
)


class Linear(Object):
    def __init__(self, din, dout, seed=0):
        self.kernel = Param(jax.random.normal(jax.random.key(seed), (din, dout)))
        self.bias = Param(jnp.zeros((dout,)))
        self.din = din


class Block(Object):
    def __init__(self):
        self.linear = Linear(2, 3)
        self.mean = BatchStat(jnp.zeros(3))
        self.layers = [Linear(3, 3, 1), Linear(3, 3, 2)]
        self.config = {"act": "relu", "scale": 2.0}


def test_split_merge_roundtrip_values_and_types():
    block = Block()
    gd, st = split(block)
    assert isinstance(gd, GraphDef) and isinstance(st, State)
    new = merge(gd, st)
    assert new is not block and type(new) is Block
    assert new.config == {"act": "relu", "scale": 2.0}
    np.testing.assert_array_equal(new.linear.kernel[...], block.linear.kernel[...])
    assert type(new.mean) is BatchStat and new.layers[1].din == 3


def test_split_returns_copies_merge_uses_state_variables():
    block = Block()
    gd, st = split(block)
    assert st["linear"]["kernel"] is not block.linear.kernel
    new = merge(gd, st)
    assert new.linear.kernel is st["linear"]["kernel"]
    copied = merge(gd, st, copy=True)
    assert copied.linear.kernel is not st["linear"]["kernel"]


def test_state_paths_and_keystr():
    st = state(Block())
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(st)]
    assert paths == [
        "['layers'][0]['bias'].value",
        "['layers'][0]['kernel'].value",
        "['layers'][1]['bias'].value",
        "['layers'][1]['kernel'].value",
        "['linear']['bias'].value",
        "['linear']['kernel'].value",
        "['mean'].value",
    ]
    assert st.linear.kernel.shape == (2, 3)


def test_split_with_filters_and_merge_back():
    block = Block()
    gd, params, stats = split(block, Param, BatchStat)
    assert "mean" not in params and list(stats) == ["mean"]
    new = merge(gd, params, stats)
    assert type(new.mean) is BatchStat


def test_split_unmatched_leaf_names_path():
    with pytest.raises(FilterError, match=r"path \('mean',\) \(BatchStat\)"):
        split(Block(), Param)


def test_split_everything_must_be_last():
    with pytest.raises(FilterError, match="put `...` \\(or True\\) last"):
        split(Block(), ..., Param)


def test_state_filters_are_not_exhaustive():
    st = state(Block(), BatchStat)
    assert list(st) == ["mean"]
    params, stats = variables(Block(), Param, BatchStat)
    assert "linear" in params and "mean" in stats


def test_shared_variable_and_node_roundtrip():
    class Shared(Object):
        def __init__(self):
            self.a = Linear(2, 2)
            self.b = self.a
            self.w = Param(jnp.ones(1))
            self.w_again = self.w
            self.items = [self.a, self.w]

    obj = Shared()
    gd, st = split(obj)
    assert set(st) == {"a", "items"}  # first path in sorted order: items[1] before w
    assert "w" not in st and 1 in st["items"]
    new = merge(gd, st)
    assert new.a is new.b and new.w is new.w_again
    assert new.items[0] is new.a and new.items[1] is new.w


def test_cycle_roundtrip():
    class Node(Object):
        def __init__(self):
            self.w = Param(jnp.ones(1))

    a, b = Node(), Node()
    a.other, b.other = b, a
    a.me = a
    new = merge(*split(a))
    assert new.other.other is new and new.me is new
    assert new.other is not new


def test_graphdef_equality_and_hash():
    assert graphdef(Block()) == graphdef(Block())
    assert hash(graphdef(Block())) == hash(graphdef(Block()))
    other = Block()
    other.config["act"] = "gelu"
    assert graphdef(other) != graphdef(Block())


def test_graphdef_ignores_values_but_sees_statics():
    assert graphdef(Linear(2, 3)) != graphdef(Linear(5, 3))  # din is static
    a, b = Linear(2, 3), Linear(2, 3, seed=7)
    assert graphdef(a) == graphdef(b)


def test_graphdef_as_static_jit_argument():
    calls = []

    def f(gd, st):
        calls.append(1)
        return merge(gd, st).linear.kernel[...].sum()

    jf = jax.jit(f, static_argnums=0)
    gd, st = split(Block())
    jf(gd, st)
    gd2, st2 = split(Block())
    jf(gd2, st2)
    assert len(calls) == 1


def test_merge_mismatch_missing_paths():
    gd, params, stats = split(Block(), Param, BatchStat)
    with pytest.raises(StateMismatchError, match=r"missing from the state, e.g. \('mean',\)"):
        merge(gd, params)


def test_merge_mismatch_extra_paths():
    gd, st = split(Linear(2, 2))
    st["extra"] = Param(jnp.ones(1))
    with pytest.raises(StateMismatchError, match=r"unknown to the GraphDef, e.g. \('extra',\)"):
        merge(gd, st)


def test_merge_requires_graphdef():
    with pytest.raises(GraphError, match="expects a GraphDef first"):
        merge(State({}), State({}))


def test_split_rejects_non_nodes():
    with pytest.raises(GraphError, match="split\\(\\) expects a graph node.*got a value of type ArrayImpl"):
        split(jnp.ones(3))
    with pytest.raises(GraphError, match="type int"):
        split(3)


def test_merge_with_pure_values_recreates_variables():
    gd, st = split(Linear(2, 3))
    pure = jax.tree.map(lambda v: v, st.to_pure_dict())
    new = merge(gd, State(pure))
    assert type(new.kernel) is Param and new.kernel.shape == (2, 3)


def test_jax_tree_map_on_state_then_merge():
    gd, st = split(Block())
    zeros = jax.tree.map(jnp.zeros_like, st)
    new = merge(gd, zeros)
    assert float(new.linear.kernel.sum()) == 0.0 and type(new.mean) is BatchStat


def test_flatten_unflatten_lists():
    block = Block()
    gd, flat = flatten(block)
    assert isinstance(flat, FlatState)
    assert flat.paths[0] == ("layers", 0, "bias")
    assert flat.leaves[0] is block.layers[0].bias  # flatten returns the graph's own Variables
    gd2, leaves = flatten(block, with_paths=False)
    assert gd2 == gd and len(leaves) == gd.num_leaves
    new = unflatten(gd, [jnp.zeros_like(x[...]) for x in leaves])
    assert float(new.linear.kernel.sum()) == 0.0
    with pytest.raises(StateMismatchError, match="expects 7 leaves but 1 were given"):
        unflatten(gd, leaves[:1])


def test_ref_index_and_index_ref_across_calls():
    shared = Linear(2, 2)

    class Holder(Object):
        def __init__(self, inner):
            self.inner = inner

    a, b = Holder(shared), Holder(shared)
    ref_index: dict[int, int] = {}
    gd_a, leaves_a = flatten(a, with_paths=False, ref_index=ref_index)
    gd_b, leaves_b = flatten(b, with_paths=False, ref_index=ref_index)
    assert len(leaves_b) == 0  # everything in b was already numbered by the first call
    index_ref: dict[int, object] = {}
    new_a = unflatten(gd_a, leaves_a, index_ref=index_ref)
    new_b = unflatten(gd_b, leaves_b, index_ref=index_ref)
    assert new_a.inner is new_b.inner
    with pytest.raises(GraphError, match="defined in another flatten call"):
        unflatten(gd_b, leaves_b)


def test_unflatten_reuses_existing_objects_from_index_ref():
    lin = Linear(2, 2)
    ref_index: dict[int, int] = {}
    gd, leaves = flatten(lin, with_paths=False, ref_index=ref_index)
    index_ref = {i: obj for obj_id, i in ref_index.items() for obj in [_lookup(lin, obj_id)]}
    kernel = lin.kernel
    out = unflatten(gd, [jnp.ones((2,)), jnp.ones((2, 2))], index_ref=index_ref)
    assert out is lin and lin.kernel is kernel and float(lin.kernel.sum()) == 4.0


def _lookup(root, obj_id):
    for _, value in iter_graph(root):
        if id(value) == obj_id:
            return value
    raise AssertionError("not found")


def test_update_writes_into_existing_variables():
    block = Block()
    kernel = block.linear.kernel
    st = state(block)
    st["linear"]["kernel"] = st["linear"]["kernel"].replace(jnp.ones((2, 3)))
    update(block, st)
    assert block.linear.kernel is kernel and float(kernel.sum()) == 6.0


def test_update_partial_and_multiple_states():
    block = Block()
    params = state(block, Param)
    stats = state(block, BatchStat)
    stats["mean"][...] = jnp.ones(3)
    params["layers"][0]["bias"][...] = jnp.full(3, 2.0)
    update(block, params, stats)
    assert block.mean[...].tolist() == [1.0, 1.0, 1.0]
    assert block.layers[0].bias[...].tolist() == [2.0, 2.0, 2.0]
    update(block, State({"mean": jnp.zeros(3)}))  # pure value into an existing Variable
    assert type(block.mean) is BatchStat and float(block.mean.sum()) == 0.0


def test_update_adds_new_attributes():
    lin = Linear(2, 2)
    update(lin, State({"extra": Intermediate(jnp.ones(1))}))
    assert type(lin.extra) is Intermediate
    with pytest.raises(GraphError, match=r"subtree at \('missing',\)"):
        update(lin, State({"missing": {"w": Param(1.0)}}))


def test_update_raw_array_attribute_in_tuple():
    class WithTuple(Object):
        def __init__(self):
            self.pair = (jnp.zeros(1), jnp.zeros(1))

    obj = WithTuple()
    update(obj, State({"pair": {1: jnp.ones(1)}}))
    assert obj.pair[1].tolist() == [1.0] and obj.pair[0].tolist() == [0.0]


def test_pop_removes_matching_variables():
    class WithIntermediates(Object):
        def __init__(self):
            self.w = Param(jnp.ones(1))
            self.h = Intermediate(jnp.zeros(1))
            self.child = Linear(1, 1)
            self.child.h = Intermediate(jnp.ones(1))

    obj = WithIntermediates()
    popped = pop(obj, Intermediate)
    assert set(popped) == {"h", "child"} and "h" in popped["child"]
    assert not hasattr(obj, "h") and not hasattr(obj.child, "h")
    assert "w" in state(obj)
    with pytest.raises(GraphError, match="at least one filter"):
        pop(obj)


def test_clone():
    block = Block()
    other = clone(block)
    assert other is not block and other.linear.kernel is not block.linear.kernel
    np.testing.assert_array_equal(other.linear.kernel[...], block.linear.kernel[...])
    shared = clone(block, variables=False)
    assert shared.linear is not block.linear and shared.linear.kernel is block.linear.kernel
    import copy

    deep = copy.deepcopy(block)
    assert deep.linear.kernel is not block.linear.kernel


def test_iter_graph_order_and_dedup():
    class Shared(Object):
        def __init__(self):
            self.a = Linear(1, 1)
            self.b = self.a

    obj = Shared()
    items = list(iter_graph(obj))
    paths = [p for p, _ in items]
    assert paths == [("a", "bias"), ("a", "din"), ("a", "kernel"), ("a",), ()]
    assert items[-1][1] is obj


def test_find_duplicates():
    class Shared(Object):
        def __init__(self):
            self.a = Linear(1, 1)
            self.b = self.a
            self.w = self.a.kernel

    dups = find_duplicates(Shared())
    assert [("a",), ("b",)] in dups
    assert [("a", "kernel"), ("w",)] in dups
    assert find_duplicates(Shared(), only=Param) == [[("a", "kernel"), ("w",)]]


def test_tree_mode_rejects_sharing():
    class Shared(Object):
        def __init__(self):
            self.a = Linear(1, 1)
            self.b = self.a

    with pytest.raises(GraphError, match=r"path \('b',\) is the same object as the one at path \('a',\)"):
        split(Shared(), graph=False)
    gd, st = split(Linear(1, 1), graph=False)
    assert type(merge(gd, st)) is Linear


def test_pytree_containers_and_static_values():
    class Mixed(Object):
        def __init__(self):
            self.tup = (jnp.ones(1), "static", Param(jnp.zeros(1)))
            self.arr = jnp.arange(2)
            self.fn = jnp.tanh
            self.none = None

    obj = Mixed()
    gd, st = split(obj)
    assert set(st) == {"tup", "arr"}
    new = merge(gd, st)
    assert new.tup[1] == "static" and type(new.tup[2]) is Param and new.fn is jnp.tanh and new.none is None


def test_register_graph_node_type():
    class Bag:
        def __init__(self):
            self.items = {}

    register_graph_node_type(
        Bag,
        flatten=lambda b: (list(b.items.items()), None),
        set_key=lambda b, k, v: b.items.__setitem__(k, v),
        pop_key=lambda b, k: b.items.pop(k),
        create_empty=lambda _: Bag(),
        clear=lambda b: b.items.clear(),
    )
    bag = Bag()
    bag.items["z"] = Param(jnp.ones(1))
    bag.items["a"] = bag
    assert is_graph_node(bag) and is_node(bag) and is_node([1]) and not is_node(jnp.ones(1))
    gd, st = split(bag)
    assert list(st) == ["z"]
    new = merge(gd, st)
    assert new.items["a"] is new and isinstance(new, Bag)
    update(new, State({"z": jnp.zeros(1)}))
    assert float(new.items["z"][...][0]) == 0.0


def test_split_list_of_modules_root():
    layers = [Linear(1, 1), Linear(1, 1)]
    gd, st = split(layers)
    new = merge(gd, st)
    assert isinstance(new, list) and len(new) == 2 and type(new[0]) is Linear


def test_apply_caller():
    class Counter(Object):
        def __init__(self):
            self.count = Variable(jnp.array(0))

        def __call__(self, x):
            self.count[...] += 1
            return x * 2

    gd, st = split(Counter())
    out, (gd2, st2) = gd.apply(st)(3)
    assert out == 6 and int(st2["count"][...]) == 1 and int(st["count"][...]) == 1


def test_unmatched_filter_error_uses_readable_names():
    with pytest.raises(FilterError, match=r"filters \[Param\]\.\nFix: .*split\(node, Param, \.\.\.\)"):
        split(Block(), Param)


def test_unhashable_static_and_metadata_values():
    class Odd(Object):
        def __init__(self):
            self.table = [[1, 2], {"a": [3]}]  # static, nested unhashable containers
            self.lookup = np.arange(3)  # bare numpy array: a leaf
            self.w = Param(jnp.ones(1), names=["x", "y"])  # unhashable metadata

    gd, st = split(Odd())
    hash(gd)
    new = merge(gd, st)
    assert new.table == [[1, 2], {"a": [3]}] and new.w.names == ["x", "y"]
    assert "lookup" in st


def test_objects_with_integer_attribute_keys():
    class IntKeyed(Object):
        pass

    obj = IntKeyed()
    obj.__dict__[1] = Param(jnp.ones(1))
    obj.__dict__[0] = Param(jnp.zeros(1))
    gd, st = split(obj)
    assert list(st.flat_state().paths) == [(0,), (1,)]
    new = merge(gd, st)
    assert float(new.__dict__[1][...][0]) == 1.0
    obj.__dict__["name"] = Param(jnp.ones(2))  # mixed int and str keys still flatten
    bump_structure_epoch()  # a write past __setattr__ must say that the structure changed
    assert state(obj).flat_state().paths == ((0,), (1,), ("name",))


def test_graph_mode_default_context():
    from plait.core import set_graph_mode

    class Shared(Object):
        def __init__(self):
            self.a = Linear(1, 1)
            self.b = self.a

    with set_graph_mode(False):
        with pytest.raises(GraphError, match="Tree mode"):
            split(Shared())
    split(Shared())

    @set_graph_mode(False)
    def tree_split(x):
        return split(x)

    with pytest.raises(GraphError, match="Tree mode"):
        tree_split(Shared())
    assert set_graph_mode.get_default() is True


def test_set_metadata_as_pure_recursive_map():
    from plait.core import as_pure, recursive_map, set_metadata

    block = Block()
    set_metadata(block, only=BatchStat, frozen=True)
    assert block.mean.frozen is True and not block.linear.kernel.has_metadata("frozen")
    pure = as_pure(state(block))
    assert isinstance(pure["linear"]["kernel"], jax.Array)
    visited = []

    def f(path, x):
        visited.append(path)
        return x.replace(x[...] * 0) if isinstance(x, Param) else x

    out = recursive_map(f, block)
    assert out is block and float(block.linear.kernel.sum()) == 0.0
    assert visited[-1] == () and visited.count(("linear",)) == 1


def test_graphdef_and_state_copy():
    import copy

    gd, st = split(Block())
    assert copy.deepcopy(gd) is gd and copy.copy(gd) is gd
    st2 = copy.deepcopy(st)
    assert st2.flat_state().paths == st.flat_state().paths
    assert st2["linear"]["kernel"] is not st["linear"]["kernel"]
    st3 = copy.copy(st)
    assert st3["linear"] is not None and st3.raw_mapping is not st.raw_mapping


def test_apply_caller_nested_method():
    class Inner(Object):
        def __init__(self):
            self.w = Param(jnp.ones(2))

        def double(self, x):
            return self.w[...] * 2 * x

    class Outer(Object):
        def __init__(self):
            self.inner = Inner()

    from plait.core import call

    gd, st = split(Outer())
    out, (gd2, _) = gd.apply(st).inner.double(3.0)
    assert out.tolist() == [6.0, 6.0] and gd2 == gd
    out2, _ = call((gd, st)).inner.double(1.0)
    assert out2.tolist() == [2.0, 2.0]
