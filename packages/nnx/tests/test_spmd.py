"""Sharding helpers through plait.nnx on 8 simulated CPU devices."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from plait import nnx


class Sharded(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        init = nnx.with_partitioning(jax.nn.initializers.lecun_normal(), ("data", "model"))
        self.w = nnx.Param(init(rngs.params(), (8, 4)))
        self.b = nnx.Param(jnp.zeros((4,)))


def mesh():
    return jax.make_mesh((4, 2), ("data", "model"))


def test_partition_specs_and_named_shardings():
    model = Sharded(nnx.Rngs(0))
    specs = nnx.get_partition_spec(nnx.state(model))
    assert specs["w"].value == P("data", "model") and specs["b"].value == P()
    shardings = nnx.get_named_sharding(nnx.state(model), mesh())
    assert shardings["w"].value == NamedSharding(mesh(), P("data", "model"))


def test_get_abstract_model_has_shardings_and_computes_nothing():
    graphdef, abstract = nnx.get_abstract_model(lambda: Sharded(nnx.Rngs(0)), mesh())
    w = abstract["w"].value
    assert isinstance(w, jax.ShapeDtypeStruct) and w.shape == (8, 4)
    assert w.sharding.spec == P("data", "model")
    assert isinstance(abstract["w"], nnx.Param)
    # sharded init: jit the constructor with the abstract shardings as out_shardings
    out_shardings = jax.tree.map(lambda a: a.sharding, abstract)
    state = jax.jit(lambda: nnx.state(Sharded(nnx.Rngs(0))), out_shardings=out_shardings)()
    model = nnx.merge(graphdef, state)
    assert model.w[...].sharding.spec == P("data", "model")
    np.testing.assert_allclose(model.w[...], Sharded(nnx.Rngs(0)).w[...], rtol=1e-6)


def test_as_abstract_uses_the_mesh_in_context():
    model = Sharded(nnx.Rngs(0))
    plain = nnx.as_abstract(nnx.state(model))
    assert plain["w"].value.sharding is None
    with jax.set_mesh(mesh()):
        placed = nnx.as_abstract(model)
    assert isinstance(placed, Sharded) and placed is not model
    assert placed.w.value.sharding.spec == P("data", "model")
    assert nnx.abstract_with_sharding is nnx.as_abstract


def test_sharding_constraint_inside_jit():
    x = jnp.arange(32.0).reshape(8, 4)

    @jax.jit
    def f(x):
        return nnx.with_sharding_constraint(x * 2, P("data", None))

    with jax.set_mesh(mesh()):
        y = f(x)
    np.testing.assert_array_equal(y, 2 * x)
    assert y.sharding.spec == P("data", None)
