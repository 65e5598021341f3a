"""nnx-level graph helpers: GraphState, pure trees, metadata, maps, contexts, RNG helpers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from plait import nnx


class Foo(nnx.Module):
    def __init__(self):
        self.w = nnx.Param(jnp.ones(2))
        self.count = nnx.BatchStat(jnp.zeros((), jnp.int32))
        self.rngs = nnx.Rngs(0)


def test_unpack_graphstate_and_merge():
    foo = Foo()
    params, rest = nnx.unpack(foo, nnx.Param, ...)
    assert isinstance(params, nnx.GraphState) and list(params) == ["w"]
    params["w"][...] = jnp.full(2, 3.0)
    rebuilt = nnx.merge(params, rest)
    assert rebuilt.w[...].tolist() == [3.0, 3.0] and foo.w[...].tolist() == [1.0, 1.0]
    leaves = jax.tree.leaves(params)
    assert len(leaves) == 1


def test_as_pure_and_map():
    foo = Foo()
    pure = nnx.as_pure(nnx.state(foo, nnx.Param))
    assert isinstance(pure["w"], jax.Array)
    assert nnx.pure is nnx.as_pure
    doubled = nnx.map(lambda path, v: v * 2 if path == ("w",) else v, foo)
    assert doubled.w[...].tolist() == [2.0, 2.0] and foo.w[...].tolist() == [1.0, 1.0]
    assert isinstance(doubled.w, nnx.Param)


def test_recursive_map_visits_nodes_bottom_up():
    foo = Foo()
    seen = []

    def f(path, x):
        seen.append((path, type(x).__name__))
        return x.replace(x[...] + 1) if isinstance(x, nnx.Param) else x

    out = nnx.recursive_map(f, foo)  # graph nodes are updated in place, as core documents
    assert out.w[...].tolist() == [2.0, 2.0]
    assert seen[-1] == ((), "Foo")
    assert (("w",), "Param") in seen


def test_set_metadata_and_check_pytree():
    foo = Foo()
    nnx.set_metadata(foo, only=nnx.Param, sharding_names=("model",))
    assert foo.w.sharding_names == ("model",)
    assert not foo.count.has_metadata("sharding_names")

    class Bad(nnx.Pytree):
        def __init__(self):
            self.table = nnx.static(jnp.ones(3))

    with pytest.raises(ValueError, match=r"Bad.table \(path 'table'\) is marked static but holds data"):
        nnx.check_pytree(Bad())
    nnx.check_pytree(foo)


def test_variable_modes_are_plain():
    assert dict(nnx.var_defaults()) == {"hijax": False, "ref": False}
    with pytest.raises(ValueError, match="hijax and mutable-array"):
        nnx.var_defaults(hijax=True)
    with pytest.raises(ValueError, match="hijax and mutable-array"):
        nnx.with_vars(Foo(), ref=True)
    foo = Foo()
    copy = nnx.with_vars(foo)
    assert copy.w is not foo.w and copy.w[...].tolist() == foo.w[...].tolist()


def test_use_eager_sharding_toggles():
    assert nnx.using_eager_sharding()
    with nnx.use_eager_sharding(False):
        assert not nnx.using_eager_sharding()
    assert nnx.using_eager_sharding()

    @nnx.use_eager_sharding(False)
    def inside():
        return nnx.using_eager_sharding()

    assert inside() is False and nnx.using_eager_sharding()


def test_update_context_writes_back_through_a_jax_transform():
    foo = Foo()
    w = foo.w
    with nnx.update_context("t"):
        with nnx.split_context("t") as ctx:
            graphdef, state = ctx.split(foo)

        box = {}

        @jax.jit
        def step(state):
            with nnx.merge_context("t", True) as ctx:
                inner = ctx.merge(graphdef, state)
            inner.w[...] = inner.w[...] * 5
            inner.extra = nnx.Param(jnp.zeros(1))
            with nnx.split_context("t") as ctx:
                box["graphdef"], new_state = ctx.split(inner)
            return new_state

        new_state = step(state)
        new_graphdef = box["graphdef"]
        with nnx.merge_context("t", False) as ctx:
            result = ctx.merge(new_graphdef, new_state)
    assert result is foo and foo.w is w
    assert foo.w[...].tolist() == [5.0, 5.0] and foo.extra.shape == (1,)
    with pytest.raises(ValueError, match=r"No update_context\('t'\) is active"):
        nnx.current_update_context("t")


def test_with_rngs_and_backup_keys():
    foo = Foo()
    split = nnx.with_rngs(foo, split=3)
    assert split.rngs.default.key.shape == (3,) and foo.rngs.default.key.shape == ()
    assert split.w is not foo.w
    backups = nnx.rnglib.backup_keys(foo)
    first = foo.rngs()
    nnx.restore_rngs(backups)
    np.testing.assert_array_equal(jax.random.key_data(foo.rngs()), jax.random.key_data(first))


def test_traversals():
    from plait.nnx import traversals

    nested = {"a": {"b": 1, "c": {}}, "d": 2}
    flat = traversals.flatten_mapping(nested, keep_empty_nodes=True)
    assert flat == {("a", "b"): 1, ("a", "c"): traversals.empty_node, ("d",): 2}
    assert traversals.unflatten_mapping(flat) == nested
    assert traversals.flatten_mapping(nested, sep="/") == {"a/b": 1, "d": 2}
    assert traversals.unflatten_mapping(list(traversals.flatten_to_sequence(nested))) == {
        "a": {"b": 1}, "d": 2
    }


def test_dataclass_pytree():
    @nnx.dataclass
    class Point(nnx.Pytree):
        x: jax.Array
        name: str = nnx.static(default="p")

    pt = Point(jnp.ones(2))
    leaves, treedef = jax.tree.flatten(pt)
    assert len(leaves) == 1 and jax.tree.unflatten(treedef, leaves).name == "p"
    with pytest.raises(TypeError, match="expects a subclass of nnx.Pytree"):
        nnx.dataclass(int)


def test_graph_mode_switch():
    foo = Foo()
    foo.alias = foo.w  # a shared reference: only graph mode allows it
    with nnx.set_graph_mode(False):
        with pytest.raises(ValueError, match="shared|reference|Shared"):
            nnx.split(foo)
    graphdef, state = nnx.split(foo)
    assert list(nnx.merge(graphdef, state).__dict__)  # graph mode again
