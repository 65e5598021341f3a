"""Property tests: random object graphs with shared references and cycles round-trip."""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from plait.core import (
    BatchStat,
    Cache,
    Object,
    Param,
    Variable,
    graphdef,
    merge,
    split,
    state,
    update,
)

VAR_TYPES = [Param, BatchStat, Cache]
ATTR_NAMES = ["a", "b", "c", "d"]


class Node(Object):
    pass


# A blueprint is plain data describing a graph; `build` turns it into fresh objects, so the
# same blueprint built twice gives two graphs of equal structure.
ref = st.one_of(
    st.tuples(st.just("obj"), st.integers(0, 4)),
    st.tuples(st.just("var"), st.integers(0, 4)),
    st.tuples(st.just("static"), st.integers(-3, 3)),
    st.tuples(st.just("array"), st.integers(1, 3)),
)
attr_value = st.one_of(
    ref,
    st.tuples(st.just("list"), st.lists(ref, max_size=3)),
    st.tuples(st.just("tuple"), st.lists(ref, max_size=3)),
    st.tuples(st.just("dict"), st.dictionaries(st.sampled_from(["x", "y", "z"]), ref, max_size=3)),
)
blueprints = st.fixed_dictionaries(
    {
        "objects": st.lists(st.dictionaries(st.sampled_from(ATTR_NAMES), attr_value, max_size=4), min_size=1, max_size=5),
        "variables": st.lists(st.tuples(st.integers(0, 2), st.integers(1, 3)), min_size=5, max_size=5),
    }
)


def build(blueprint, seed=0):
    nodes = [Node() for _ in blueprint["objects"]]
    variables = [
        VAR_TYPES[t](jnp.full((size,), float(seed + i))) for i, (t, size) in enumerate(blueprint["variables"])
    ]

    def resolve(spec):
        kind = spec[0]
        if kind == "obj":
            return nodes[spec[1] % len(nodes)]
        if kind == "var":
            return variables[spec[1]]
        if kind == "static":
            return spec[1]
        if kind == "array":
            return jnp.arange(spec[1], dtype=jnp.float32) + seed
        if kind == "list":
            return [resolve(s) for s in spec[1]]
        if kind == "tuple":
            return tuple(resolve(s) for s in spec[1])
        return {k: resolve(s) for k, s in spec[1].items()}

    for node, attrs in zip(nodes, blueprint["objects"], strict=False):
        for name, spec in attrs.items():
            setattr(node, name, resolve(spec))
    return nodes[0]


def describe(root):
    """A canonical structural description: types, keys, values and the sharing pattern."""
    seen = {}

    def visit(x):
        if isinstance(x, (Variable, Object)):
            if id(x) in seen:
                return ("ref", seen[id(x)])
            seen[id(x)] = len(seen)
            if isinstance(x, Variable):
                return ("var", type(x).__name__, seen[id(x)], np.asarray(x[...]).tolist())
            return ("obj", type(x).__name__, seen[id(x)], tuple((k, visit(v)) for k, v in sorted(vars(x).items())))
        if isinstance(x, list):
            return ("list", tuple(visit(v) for v in x))
        if isinstance(x, tuple):
            return ("tuple", tuple(visit(v) for v in x))
        if isinstance(x, dict):
            return ("dict", tuple((k, visit(x[k])) for k in sorted(x)))
        if isinstance(x, jax.Array):
            return ("array", np.asarray(x).tolist())
        return ("static", x)

    return visit(root)


@settings(max_examples=60, deadline=None)
@given(blueprints)
def test_merge_split_preserves_structure_values_and_sharing(blueprint):
    root = build(blueprint)
    new = merge(*split(root))
    assert describe(new) == describe(root)
    assert graphdef(new) == graphdef(root)


@settings(max_examples=40, deadline=None)
@given(blueprints, st.permutations(VAR_TYPES), st.integers(0, 3))
def test_split_merge_with_filter_partitions(blueprint, order, n_explicit):
    root = build(blueprint)
    filters = (*order[:n_explicit], ...)
    graphdef_, *states = split(root, *filters)
    assert len(states) == len(filters)
    for var_type, part in zip(order[:n_explicit], states, strict=False):
        leaves = jax.tree.leaves(part, is_leaf=lambda x: isinstance(x, Variable))
        assert all(isinstance(v, var_type) for v in leaves)
    merged = merge(graphdef_, *reversed(states))  # order of states does not matter
    assert describe(merged) == describe(root)


@settings(max_examples=40, deadline=None)
@given(blueprints, st.integers(1, 5))
def test_graphdef_equal_for_equal_structure(blueprint, seed):
    a, b = build(blueprint, seed=0), build(blueprint, seed=seed)
    gd_a, gd_b = graphdef(a), graphdef(b)
    assert gd_a == gd_b and hash(gd_a) == hash(gd_b)


@settings(max_examples=40, deadline=None)
@given(blueprints)
def test_update_writes_new_values_in_place(blueprint):
    root = build(blueprint)
    before = describe(root)
    plus_one = jax.tree.map(lambda x: x + 1, state(root))
    update(root, plus_one)
    after = describe(root)
    expected = describe(merge(graphdef(root), plus_one))
    assert after == expected
    if plus_one:  # at least one leaf changed
        assert after != before
