import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P
from plait.core import (
    PARTITION_NAME,
    Param,
    RulesFallback,
    State,
    add_axis,
    composite_rules,
    from_sharding_rules,
    get_logical_axis_rules,
    get_named_sharding,
    get_partition_spec,
    get_pspec,
    logical_axis_rules,
    logical_to_mesh,
    logical_to_mesh_axes,
    logical_to_mesh_sharding,
    partition_spec_from_metadata,
    remove_axis,
    set_logical_axis_rules,
    shard_value,
    with_logical_constraint,
    with_partitioning,
    with_sharding_constraint,
)

RULES = [("batch", "data"), ("embed", None), ("mlp", "model"), ("heads", "model")]


@pytest.fixture(scope="module")
def explicit_mesh():
    return jax.make_mesh((4, 2), ("data", "model"), axis_types=(AxisType.Explicit,) * 2)


@pytest.fixture(scope="module")
def auto_mesh():
    return jax.make_mesh((4, 2), ("data", "model"), axis_types=(AxisType.Auto,) * 2)


def _shard_shapes(x):
    return {tuple(s.data.shape) for s in x.addressable_shards}


# --------------------------------------------------------------------------- rules


def test_rules_context_nests_and_restores():
    assert get_logical_axis_rules() == ()
    with logical_axis_rules(RULES):
        assert get_logical_axis_rules() == RULES
        with pytest.raises(RuntimeError, match="boom"):
            with logical_axis_rules([("x", "y")]):
                assert get_logical_axis_rules() == [("x", "y")]
                raise RuntimeError("boom")
        assert get_logical_axis_rules() == RULES
    assert get_logical_axis_rules() == ()


def test_set_rules_and_thread_isolation():
    seen = []
    set_logical_axis_rules(RULES)
    try:
        worker = threading.Thread(target=lambda: seen.append(get_logical_axis_rules()))
        worker.start()
        worker.join()
        assert get_logical_axis_rules() == RULES
    finally:
        set_logical_axis_rules(())
    assert seen == [()]


@pytest.mark.parametrize(
    "bad, message",
    [
        ("batch", "must be a list or tuple"),
        ([("batch",)], "rule #0 is \\('batch',\\)"),
        ([("batch", "data"), ("embed", 3)], "rule #1"),
    ],
)
def test_malformed_rules(bad, message):
    with pytest.raises(ValueError, match=message):
        set_logical_axis_rules(bad)
    assert get_logical_axis_rules() == ()


def test_logical_to_mesh_axes_priorities():
    # The worked example of Flax's documentation.
    rules = (("batch", "X"), ("features", "X"), ("heads", "Y"), ("batch", "Z"))
    assert logical_to_mesh_axes(("batch", "length", "heads", "features"), rules) == P(
        "X", None, "Y", None
    )
    # Rules are tried in order: 'batch' takes X first, so 'features' stays unsharded...
    assert logical_to_mesh_axes(("features", "batch"), rules) == P(None, "X")
    # ... and a later rule fills a dimension whose earlier rule's mesh axis is taken.
    later = (("features", "X"), ("batch", "X"), ("batch", "Z"))
    assert logical_to_mesh_axes(("batch", "features"), later) == P("Z", "X")
    assert logical_to_mesh_axes(("heads", "mlp"), RULES) == P(None, "model")  # mlp's rule is first
    assert logical_to_mesh_axes(("embed", None, "unknown"), RULES) == P(None, None, None)
    assert logical_to_mesh_axes(None, RULES) is None
    assert logical_to_mesh_axes(("a", "b"), [("a", ("x", "y")), ("b", "y")]) == P(("x", "y"), None)
    with logical_axis_rules(RULES):
        assert logical_to_mesh_axes(("batch", "mlp")) == P("data", "model")
    with pytest.raises(ValueError, match=r"\['batch'\] occur more than once"):
        logical_to_mesh_axes(("batch", "batch"), RULES)


def test_logical_to_mesh_trees(explicit_mesh):
    tree = {"w": P("embed", "mlp"), "b": P("mlp"), "n": None}
    assert logical_to_mesh(tree, RULES) == {"w": P(None, "model"), "b": P("model"), "n": None}
    shardings = logical_to_mesh_sharding(tree, explicit_mesh, RULES)
    assert shardings["w"] == NamedSharding(explicit_mesh, P(None, "model"))
    assert shardings["n"] is None


def test_nnx_style_rule_lookup():
    assert from_sharding_rules(("embed", "data", None), RULES) == (None, "data", None)
    assert from_sharding_rules((("batch", "mlp"),), RULES) == (("data", "model"),)
    assert composite_rules([("a", "x")], [("a", "x"), ("b", "y")]) == (("a", "x"), ("b", "y"))
    assert composite_rules((), ()) == ()
    with pytest.raises(ValueError, match="Inconsistent logical axis rules for 'a': 'x' .* vs 'z'"):
        composite_rules([("a", "x")], [("a", "z")])
    assert get_pspec(("mlp", "data")) == P("mlp", "data")  # no rules: names are mesh axes
    with logical_axis_rules(RULES):
        assert get_pspec(("mlp", "data")) == P("model", "data")
        assert get_pspec(("a",), sharding_rules=[("a", "data")]) == P("data")


# --------------------------------------------------------------------------- Variables


def test_with_partitioning_and_get_partition_spec():
    init = with_partitioning(jax.nn.initializers.ones, ("embed", "mlp"))
    kernel = Param(init(jax.random.key(0), (4, 8)))
    assert kernel.sharding_names == ("embed", "mlp")
    state = State(
        {
            "kernel": kernel,
            "bias": Param(jnp.zeros(8)),
            "local": Param(jnp.zeros(2), sharding_names=("x",), sharding_rules=[("x", "data")]),
            "raw": jnp.ones(3),
            "count": Param(3),
        }
    )
    specs = get_partition_spec(state)
    assert isinstance(specs, State) and isinstance(specs["kernel"], Param)
    assert specs["kernel"].value == P("embed", "mlp")  # no active rules: raw names
    assert specs["kernel"].sharding_names == ("embed", "mlp")  # metadata is kept
    assert specs["bias"].value == P()
    assert specs["local"].value == P("data")
    assert specs["raw"] == P()
    assert specs["count"].value is None
    with logical_axis_rules(RULES):
        assert get_partition_spec(state)["kernel"].value == P(None, "model")
    assert partition_spec_from_metadata({"out_sharding": ("a",)}) == P("a")
    assert partition_spec_from_metadata({}) is None


def test_named_sharding_places_state_on_mesh(explicit_mesh):
    state = State(
        {
            "kernel": Param(jnp.ones((8, 4)), sharding_names=("batch", "mlp")),
            "bias": Param(jnp.ones(4)),
        }
    )
    with logical_axis_rules(RULES):
        shardings = get_named_sharding(state, explicit_mesh)
    assert shardings["kernel"].value == NamedSharding(explicit_mesh, P("data", "model"))
    placed = jax.device_put(state, shardings)
    assert _shard_shapes(placed["kernel"].value) == {(2, 2)}
    assert _shard_shapes(placed["bias"].value) == {(4,)}

    @jax.jit
    def step(s):
        return jax.tree.map(lambda x: x * 2, s)

    out = step(placed)
    assert out["kernel"].value.sharding.spec == P("data", "model")
    np.testing.assert_allclose(out["kernel"].value, 2 * np.ones((8, 4)))


def test_eager_sharding_inside_a_mesh(explicit_mesh):
    with jax.set_mesh(explicit_mesh), logical_axis_rules(RULES):
        p = Param(jnp.ones((8, 4)), sharding_names=("batch", "mlp"))
        unsharded = Param(jnp.ones((8, 4)), sharding_names=("batch", "mlp"), eager_sharding=False)
    assert p.value.sharding.spec == P("data", "model")
    assert _shard_shapes(p.value) == {(2, 2)}
    assert _shard_shapes(unsharded.value) == {(8, 4)}
    off_mesh = Param(jnp.ones((8, 4)), sharding_names=("data", "model"))
    assert len(off_mesh.value.sharding.device_set) == 1  # no mesh: left where it was


def test_eager_sharding_with_mesh_metadata_and_tracers(auto_mesh):
    init = with_partitioning(jax.nn.initializers.ones, ("data", None), mesh=auto_mesh)
    p = Param(init(jax.random.key(0), (8, 2)))
    assert _shard_shapes(p.value) == {(2, 2)}

    @jax.jit
    def make():
        return Param(init(jax.random.key(0), (8, 2))).value * 3

    assert _shard_shapes(make()) == {(2, 2)}


def test_shard_value_errors_and_noops(explicit_mesh):
    with pytest.raises(ValueError, match=r"names \['embed'\], which are not axes of the mesh"):
        shard_value(jnp.ones(8), ("embed",), None, explicit_mesh)
    with logical_axis_rules([("embed", "model")]):
        assert _shard_shapes(shard_value(jnp.ones(8), ("embed",), None, explicit_mesh)) == {(4,)}
    with pytest.raises(ValueError, match=r"2 names for 1 dimensions"):
        shard_value(jnp.ones(8), ("data", "model"), None, explicit_mesh)
    x = jnp.ones(8)
    assert shard_value(x, None, None, explicit_mesh) is x
    assert shard_value(x, ("data",), None, None) is x
    placed = shard_value(x, NamedSharding(explicit_mesh, P("data")), None, None)
    assert _shard_shapes(placed) == {(2,)}


# --------------------------------------------------------------------------- constraints


def test_logical_constraint_noops():
    x = jnp.ones((8, 4))
    assert with_logical_constraint(x, ("batch", "mlp")) is x  # no rules
    assert with_logical_constraint(x, ("batch", "mlp"), rules=RULES) is x  # no mesh
    assert with_logical_constraint(x, None, rules=RULES) is x


@pytest.mark.parametrize("mesh_name", ["explicit_mesh", "auto_mesh"])
def test_logical_constraint_places_eagerly_and_under_jit(mesh_name, request):
    mesh = request.getfixturevalue(mesh_name)
    x = jnp.arange(32.0).reshape(8, 4)
    eager = with_logical_constraint(x, ("batch", "mlp"), rules=RULES, mesh=mesh)
    assert _shard_shapes(eager) == {(2, 2)}

    @jax.jit
    def f(a):
        return with_logical_constraint(a * 2, P("batch", "embed"), rules=RULES, mesh=mesh)

    with jax.set_mesh(mesh):  # JAX wants explicit-axis jits entered under their mesh
        out = f(x)
    assert _shard_shapes(out) == {(2, 4)}
    np.testing.assert_allclose(out, np.arange(32.0).reshape(8, 4) * 2)

    with jax.set_mesh(mesh), logical_axis_rules(RULES):
        tree = with_logical_constraint({"a": x, "b": x}, {"a": ("batch", None), "b": None})
    assert _shard_shapes(tree["a"]) == {(2, 4)}
    assert tree["b"] is x


def test_logical_constraint_fallbacks(explicit_mesh):
    x = jnp.ones((8, 4))
    with pytest.raises(ValueError, match=r"names \['length'\] of \('batch', 'length'\) match no"):
        with_logical_constraint(
            x,
            ("batch", "length"),
            rules=RULES,
            mesh=explicit_mesh,
            fallback=RulesFallback.RAISE_ERROR,
        )
    kept = with_logical_constraint(
        x,
        ("batch", "length"),
        rules=RULES,
        mesh=explicit_mesh,
        fallback=RulesFallback.NO_CONSTRAINT,
    )
    assert kept is x
    unsharded = with_logical_constraint(x, ("batch", "length"), rules=RULES, mesh=explicit_mesh)
    assert _shard_shapes(unsharded) == {(2, 4)}


def test_sharding_constraint_by_mesh_axes(auto_mesh, explicit_mesh):
    x = jnp.ones((8, 4))
    assert with_sharding_constraint(x, P("data")) is x  # no mesh
    assert _shard_shapes(with_sharding_constraint(x, P("data", "model"), mesh=auto_mesh)) == {
        (2, 2)
    }
    named = with_sharding_constraint(x, NamedSharding(explicit_mesh, P(None, "model")))
    assert _shard_shapes(named) == {(8, 2)}
    with jax.set_mesh(explicit_mesh), logical_axis_rules(RULES):
        out = jax.jit(lambda a: with_sharding_constraint(a + 1, P("batch", None)))(x)
    assert _shard_shapes(out) == {(2, 4)}


# --------------------------------------------------------------------------- lifted axes


def test_add_and_remove_axis_metadata():
    state = State({"w": Param(jnp.ones((2, 3)), sharding_names=("embed", "mlp"), tag=("a", "b"))})
    add_axis(state, 0, {PARTITION_NAME: "layers", "tag": "t"})
    assert state["w"].sharding_names == ("layers", "embed", "mlp")
    assert state["w"].tag == ("t", "a", "b")
    remove_axis(state, 0, {PARTITION_NAME: "layers", "tag": "t"})
    assert state["w"].sharding_names == ("embed", "mlp") and state["w"].tag == ("a", "b")
    with pytest.raises(ValueError, match="expected 'other' there but found 'embed'"):
        remove_axis(state, 0, {PARTITION_NAME: "other"})
    with pytest.raises(ValueError, match="has no 'partition_name' entry"):
        add_axis(state, 0, {})
