"""Conversion between Linen variables and NNX Variables (bridge.variables)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.sharding import PartitionSpec as P
from plait import bridge, nnx
from plait import linen as nn
from plait.bridge import variables as bv

_names = st.sampled_from(["a", "b", "kernel", "Dense_0", "layers"])
_collections = st.sampled_from(["params", "batch_stats", "cache", "bridge_test_counter"])


@st.composite
def _linen_variables(draw):
    """Linen variables with distinct paths across collections (as NNX requires)."""
    paths = draw(
        st.lists(
            st.lists(_names, min_size=1, max_size=3).map(tuple), min_size=1, max_size=5, unique=True
        )
    )
    # No path may be a prefix of another (a leaf cannot also be a group).
    paths = [p for p in paths if not any(q != p and q[: len(p)] == p for q in paths)]
    variables: dict = {}
    for i, path in enumerate(paths):
        node = variables.setdefault(draw(_collections), {})
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = jnp.full((i + 1,), float(i))
    return variables


@settings(max_examples=25, deadline=None)
@given(_linen_variables())
def test_linen_to_nnx_and_back_is_the_identity(variables):
    attrs = bv.linen_vars_to_nnx_attrs(variables)
    back = bv.nnx_attrs_to_linen_vars(attrs)
    assert jax.tree.structure(back) == jax.tree.structure(variables)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(variables), strict=True):
        np.testing.assert_array_equal(a, b)


def test_collections_map_to_their_variable_types():
    attrs = bv.linen_vars_to_nnx_attrs(
        {
            "params": {"w": jnp.ones(2)},
            "batch_stats": {"m": jnp.zeros(2)},
            "bridge_test_stats": {"s": jnp.ones(1)},
        }
    )
    assert type(attrs["w"]) is nnx.Param
    assert type(attrs["m"]) is nnx.BatchStat
    assert type(attrs["s"]) is nnx.variable_type_from_name("bridge_test_stats")
    assert nnx.variable_name_from_type(type(attrs["s"])) == "bridge_test_stats"


def test_duplicate_paths_across_collections_are_rejected():
    with pytest.raises(
        bridge.VariableLayoutError,
        match=r"(?s)same NNX attribute path x/w.*'params'.*'batch_stats'",
    ):
        bv.linen_vars_to_nnx_attrs({"params": {"x": {"w": 1.0}}, "batch_stats": {"x": {"w": 2.0}}})


def test_values_that_are_not_variables_are_rejected():
    with pytest.raises(
        bridge.VariableLayoutError, match=r"(?s)value at a/b: it is a ndarray.*nnx\.Param\(value\)"
    ):
        bv.nnx_attrs_to_linen_vars({"a": {"b": np.zeros(2)}})


def test_linen_boxes_keep_their_metadata_and_type():
    box = nn.LogicallyPartitioned(jnp.ones((2, 3)), ("embed", "mlp"), rules=(("embed", "data"),))
    variable = bv.to_nnx_var("params", box)
    assert type(variable) is nnx.Param
    assert variable.sharding_names == ("embed", "mlp")
    assert variable.get_metadata()["linen_meta_type"] is nn.LogicallyPartitioned
    back = bv.to_linen_var(variable)
    assert type(back) is nn.LogicallyPartitioned and back.names == ("embed", "mlp")
    assert back.rules == (("embed", "data"),)
    assert back.mesh_partition_spec() == P("data", None)


def test_nnxmeta_round_trip_and_axis_changes():
    variable = nnx.Param(jnp.ones((2, 3)), sharding_names=("in", "out"))
    box = bv.to_linen_var(variable)
    assert isinstance(box, bridge.NNXMeta)
    assert bv.to_nnx_var("params", box).sharding_names == ("in", "out")

    stacked = box.replace_boxed(jnp.ones((4, 2, 3))).add_axis(0, {nn.PARTITION_NAME: "layers"})
    assert stacked.get_partition_spec() == P("layers", "in", "out")
    assert stacked.remove_axis(0, {nn.PARTITION_NAME: "layers"}).get_partition_spec() == P(
        "in", "out"
    )
    assert stacked.unbox().shape == (4, 2, 3)
    # A box is a pytree of its value only: jit and tree_map keep the metadata.
    doubled = jax.jit(lambda b: jax.tree.map(lambda v: 2 * v, b))(box)
    assert isinstance(doubled, bridge.NNXMeta) and float(doubled.value[0, 0]) == 2.0


def test_nnxmeta_in_the_wrong_collection_is_rejected():
    box = bridge.NNXMeta(nnx.BatchStat, jnp.zeros(2), {"sharding_names": ("x",)})
    with pytest.raises(
        bridge.VariableLayoutError,
        match=r"(?s)BatchStat is stored in Linen collection 'params'.*'batch_stats'",
    ):
        bv.to_nnx_var("params", box)


def test_vanilla_variables_and_col_names():
    assert bv.is_vanilla_variable(nnx.Param(jnp.ones(1)))
    assert not bv.is_vanilla_variable(nnx.Param(jnp.ones(1), sharding_names=("a",)))
    path = (jax.tree_util.DictKey("batch_stats"), jax.tree_util.DictKey("m"))
    assert bv.get_col_name(path) == "batch_stats"


def test_sort_variable_types_puts_subclasses_first():
    ordered = bv.sort_variable_types([nnx.Variable, nnx.Intermediate, nnx.Param, nnx.Perturbation])
    assert (
        ordered.index(nnx.Perturbation)
        < ordered.index(nnx.Intermediate)
        < ordered.index(nnx.Variable)
    )
    assert ordered.index(nnx.Param) < ordered.index(nnx.Variable)
