import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from plait.core import serialization, struct


@struct.dataclass
class Point:
    x: jax.Array
    y: jax.Array
    label: str = struct.field(pytree_node=False, default="p")


class TrainStateLike(struct.PyTreeNode):
    step: int
    params: dict
    apply_fn: object = struct.field(pytree_node=False, default=None)


def test_dataclass_leaves_and_static_fields():
    p = Point(jnp.ones(2), jnp.zeros(2), label="a")
    leaves, treedef = jax.tree.flatten(p)
    assert len(leaves) == 2
    np.testing.assert_array_equal(leaves[0], np.ones(2))
    # The static field lives in the treedef: another label is another structure.
    assert treedef != jax.tree.structure(Point(jnp.ones(2), jnp.zeros(2), label="b"))
    assert jax.tree.unflatten(treedef, [1, 2]) == Point(1, 2, label="a")


def test_key_paths_are_attribute_names():
    p = Point(1.0, 2.0)
    paths = [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(p)[0]]
    assert paths == [".x", ".y"]


def test_frozen_and_replace():
    p = Point(1.0, 2.0)
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'x'"):
        p.x = 3.0
    q = p.replace(x=3.0)
    assert (q.x, q.y, q.label) == (3.0, 2.0, "p")
    assert p.x == 1.0


def test_tree_map_and_jit():
    p = Point(jnp.arange(3.0), jnp.ones(3), label="k")
    doubled = jax.tree.map(lambda a: a * 2, p)
    np.testing.assert_allclose(doubled.x, [0.0, 2.0, 4.0])
    assert doubled.label == "k"

    traces = []

    @jax.jit
    def norm(pt):
        traces.append(pt.label)
        return jnp.sum(pt.x * pt.y)

    assert float(norm(p)) == 3.0
    assert float(norm(p.replace(x=jnp.ones(3)))) == 3.0
    assert traces == ["k"]  # same static label: one trace
    norm(p.replace(label="other"))
    assert traces == ["k", "other"]


def test_pytreenode_subclass_is_dataclass_and_pytree():
    s = TrainStateLike(step=0, params={"w": jnp.ones(2)}, apply_fn=len)
    assert dataclasses.is_dataclass(s)
    assert [jax.tree_util.keystr(k) for k, _ in jax.tree_util.tree_flatten_with_path(s)[0]] == [
        ".step",
        ".params['w']",
    ]
    s2 = jax.tree.map(lambda x: x + 1, s)
    assert s2.step == 1 and s2.apply_fn is len
    assert s.replace(step=5).step == 5


def test_pytreenode_inheritance_adds_fields():
    class Child(TrainStateLike):
        extra: int = 0

    c = Child(step=1, params={}, extra=2)
    assert jax.tree.leaves(c) == [1, 2]
    assert isinstance(c.replace(extra=3), Child)


def test_kw_only_through_class_keyword_and_decorator():
    class Cfg(struct.PyTreeNode, kw_only=True):
        a: int = 1
        b: int

    with pytest.raises(TypeError, match="positional argument"):
        Cfg(1, 2)
    assert Cfg(b=2).a == 1

    @struct.dataclass(kw_only=True)
    class Cfg2:
        a: int

    with pytest.raises(TypeError, match="positional argument"):
        Cfg2(1)
    assert Cfg2(a=1).a == 1


def test_decorating_twice_is_a_noop():
    assert struct.dataclass(Point) is Point


def test_init_false_field_is_recomputed_and_not_a_leaf():
    @struct.dataclass
    class WithDerived:
        a: float
        twice: float = struct.field(init=False)

        def __post_init__(self):
            object.__setattr__(self, "twice", self.a * 2)

    w = WithDerived(3.0)
    assert jax.tree.leaves(w) == [3.0]
    assert jax.tree.map(lambda x: x + 1, w).twice == 8.0


def test_jax_static_marker_is_honoured():
    @struct.dataclass
    class UsesJaxStatic:
        a: float
        name: str = jax.tree.static(default="n")

    assert jax.tree.leaves(UsesJaxStatic(1.0)) == [1.0]


def test_serialization_round_trip_and_errors():
    p = Point(np.ones(2, np.float32), np.zeros(2, np.float32), label="keep")
    state = serialization.to_state_dict(p)
    assert set(state) == {"x", "y"}  # static fields are not state
    restored = serialization.from_bytes(
        Point(np.zeros(2, np.float32), np.zeros(2, np.float32), label="keep"),
        serialization.to_bytes(p),
    )
    np.testing.assert_array_equal(restored.x, np.ones(2))
    assert restored.label == "keep"

    with pytest.raises(
        serialization.StateDictMismatchError, match=r"missing from the state: \['y'\]"
    ):
        serialization.from_state_dict(p, {"x": np.ones(2)})
    with pytest.raises(serialization.StateDictMismatchError, match=r"not in the target: \['z'\]"):
        serialization.from_state_dict(p, {"x": np.ones(2), "y": np.ones(2), "z": 1})
