"""Sharded training on 8 simulated CPU devices matches one device, for nnx and linen.

Each model is trained with the recipe of docs/scaling.md (plait.core.distributed: mesh
from a config, default logical rules, sharded init, a jit-ed step, global batches) on
meshes (data=8), (data=4, fsdp=2) and (data=2, tensor=4), and on a one-device mesh. The
loss curves must agree to float tolerance, and every parameter must be split as its
logical names say (spec and per-device shard shapes).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from plait import linen as nn
from plait import nnx
from plait.core import logical_axis_rules
from plait.core.distributed import (
    abstract_shardings,
    default_logical_rules,
    global_batch,
    make_mesh,
    sharded_init,
)
from plait.linen.training.train_state import TrainState

RULES = default_logical_rules()
BATCH, LENGTH, FEATURES, EMBED, HEADS, KV, MLP, VOCAB = 16, 4, 6, 16, 4, 4, 32, 8
STEPS = 4
MESHES = {
    "data8": {"data": 8, "fsdp": 1, "tensor": 1},
    "data4-fsdp2": {"data": 4, "fsdp": 2, "tensor": 1},
    "data2-tensor4": {"data": 2, "fsdp": 1, "tensor": 4},
}


def one_device_mesh():
    return make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, devices=jax.devices()[:1])


def batches():
    """One batch, labelled by a fixed linear rule, fed every step (so the loss must fall)."""
    rng = np.random.default_rng(0)
    teacher = rng.standard_normal((FEATURES, VOCAB))
    x = rng.standard_normal((BATCH, LENGTH, FEATURES)).astype(np.float32)
    y = np.argmax(x.mean(axis=1) @ teacher, axis=1).astype(np.int32)
    return [{"x": x, "y": y}] * STEPS


def cross_entropy(logits, labels):
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def shard_shapes(x):
    return {tuple(s.data.shape) for s in x.addressable_shards}


def expected_layout(axes):
    """(spec, per-device shard shape) of each parameter, by hand from the logical names."""
    f, t = axes["fsdp"], axes["tensor"]
    return {
        "w_in": (P(None, "fsdp"), (FEATURES, EMBED // f)),
        "qkv": (P("fsdp", None, "tensor", None), (EMBED // f, 3, HEADS // t, KV)),
        "out": (P("tensor", None, "fsdp"), (HEADS // t, KV, EMBED // f)),
        "mlp_in": (P("fsdp", "tensor"), (EMBED // f, MLP // t)),
        "mlp_in_bias": (P("tensor"), (MLP // t,)),
        "mlp_out": (P("tensor", "fsdp"), (MLP // t, EMBED // f)),
        "norm_scale": (P(None), (EMBED,)),
        "head": (P("fsdp", "tensor"), (EMBED // f, VOCAB // t)),
    }


def check_layout(params_by_name, axes, mesh):
    for name, (spec, shape) in expected_layout(axes).items():
        value = params_by_name[name]
        # Equivalent, not equal: XLA may write P(None, 'fsdp') as P() when fsdp has size 1.
        assert value.sharding.is_equivalent_to(NamedSharding(mesh, spec), value.ndim), (
            name, value.sharding.spec, spec)
        assert value.sharding.mesh.shape == mesh.shape, name
        assert len(value.addressable_shards) == mesh.size, name
        assert shard_shapes(value) == {shape}, (name, shard_shapes(value))


def attention(h, qkv, out):
    q, k, v = (jnp.einsum("ble,ehk->blhk", h, qkv[:, i]) for i in range(3))
    weights = jax.nn.softmax(jnp.einsum("bqhk,bthk->bhqt", q, k) / np.sqrt(KV), axis=-1)
    return jnp.einsum("bhqt,bthk,hke->bqe", weights, v, out)


# --------------------------------------------------------------------------- nnx


def partitioned(init, names):
    return nnx.with_partitioning(init, names)


class NnxBlock(nnx.Module):
    """Input projection, one attention layer, an MLP, LayerNorm and a classifier head."""

    def __init__(self, rngs: nnx.Rngs):
        normal = nnx.initializers.normal(EMBED**-0.5)
        self.w_in = nnx.Linear(FEATURES, EMBED, use_bias=False, rngs=rngs,
                               kernel_init=partitioned(nnx.initializers.lecun_normal(), (None, "embed")))
        self.qkv = nnx.Param(normal(rngs.params(), (EMBED, 3, HEADS, KV)),
                             sharding_names=("embed", None, "heads", "kv"))
        self.out = nnx.Param(normal(rngs.params(), (HEADS, KV, EMBED)),
                             sharding_names=("heads", "kv", "embed"))
        self.mlp_in = nnx.Linear(EMBED, MLP, rngs=rngs,
                                 kernel_init=partitioned(nnx.initializers.lecun_normal(), ("embed", "mlp")),
                                 bias_init=partitioned(nnx.initializers.zeros_init(), ("mlp",)))
        self.mlp_out = nnx.Linear(MLP, EMBED, use_bias=False, rngs=rngs,
                                  kernel_init=partitioned(nnx.initializers.lecun_normal(), ("mlp", "embed")))
        self.norm = nnx.LayerNorm(EMBED, use_bias=False, rngs=rngs,
                                  scale_init=partitioned(nnx.initializers.ones_init(), ("norm",)))
        self.head = nnx.Linear(EMBED, VOCAB, use_bias=False, rngs=rngs,
                               kernel_init=partitioned(nnx.initializers.lecun_normal(), ("embed", "vocab")))

    def __call__(self, x):
        h = self.w_in(x)
        h = h + attention(h, self.qkv[...], self.out[...])
        hidden = jax.nn.relu(self.mlp_in(h))
        # An activation constraint, mesh-resolved through the active rules (NNX semantics).
        hidden = nnx.with_sharding_constraint(hidden, P("batch", None, "mlp"))
        h = self.norm(h + self.mlp_out(hidden))
        return self.head(h.mean(axis=1))


def nnx_params(model):
    return {
        "w_in": model.w_in.kernel.value, "qkv": model.qkv.value, "out": model.out.value,
        "mlp_in": model.mlp_in.kernel.value, "mlp_in_bias": model.mlp_in.bias.value,
        "mlp_out": model.mlp_out.kernel.value, "norm_scale": model.norm.scale.value,
        "head": model.head.kernel.value,
    }


def create_nnx(key):
    model = NnxBlock(nnx.Rngs(params=key))
    return model, nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)


def train_nnx(mesh):
    model, optimizer = sharded_init(create_nnx, mesh, RULES, jax.random.key(0))
    born = {k: (v.sharding.spec, shard_shapes(v), np.asarray(v)) for k, v in nnx_params(model).items()}

    @nnx.jit
    def train_step(model, optimizer, batch):
        def loss_fn(model):
            return cross_entropy(model(batch["x"]), batch["y"])

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    losses = []
    with jax.set_mesh(mesh), logical_axis_rules(RULES):
        for batch in batches():
            losses.append(float(train_step(model, optimizer, global_batch(batch, mesh))))
    return born, (model, optimizer), losses


@pytest.fixture(scope="module")
def nnx_reference():
    return train_nnx(one_device_mesh())


@pytest.mark.parametrize("mesh_name", sorted(MESHES))
def test_nnx_sharded_training_matches_one_device(mesh_name, nnx_reference):
    axes = MESHES[mesh_name]
    mesh = make_mesh(axes)
    born, (model, optimizer), losses = train_nnx(mesh)
    ref_born, (ref_model, _), ref_losses = nnx_reference
    for name, (spec, shape) in expected_layout(axes).items():
        assert born[name][:2] == (spec, {shape}), name  # created sharded
        np.testing.assert_array_equal(born[name][2], ref_born[name][2])  # same values
    params = nnx_params(model)
    check_layout(params, axes, mesh)  # still sharded after nnx.jit steps
    mu = optimizer.opt_state[0].mu  # Adam's moments follow their parameters
    assert mu["mlp_in"]["kernel"].value.sharding.spec == P("fsdp", "tensor")
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    assert ref_losses[-1] < ref_losses[0]
    ref_params = nnx_params(ref_model)
    for name, value in params.items():
        np.testing.assert_allclose(np.asarray(value), np.asarray(ref_params[name]), atol=2e-5)


def test_nnx_hand_written_recipe_agrees_with_the_helper():
    """nnx.eval_shape + nnx.get_partition_spec under the rules + jit(out_shardings)."""
    mesh = make_mesh(MESHES["data4-fsdp2"])
    abstract_model = nnx.eval_shape(lambda: NnxBlock(nnx.Rngs(params=0)))
    graphdef, abstract_state = nnx.split(abstract_model)
    with nnx.logical_axis_rules(RULES):
        specs = nnx.get_partition_spec(abstract_state)
    shardings = jax.tree.map(lambda s: NamedSharding(mesh, s), specs,
                             is_leaf=lambda x: isinstance(x, P))
    state = jax.jit(lambda: nnx.state(NnxBlock(nnx.Rngs(params=0))), out_shardings=shardings)()
    model = nnx.merge(graphdef, state)
    check_layout(nnx_params(model), MESHES["data4-fsdp2"], mesh)
    helper = abstract_shardings(abstract_state, mesh, RULES)
    assert jax.tree.leaves(helper) == jax.tree.leaves(shardings)


# --------------------------------------------------------------------------- linen


def logical(init, names):
    return nn.with_logical_partitioning(init, names)


class LinenBlock(nn.Module):
    """The same network as NnxBlock, written with plait.linen."""

    @nn.compact
    def __call__(self, x):
        normal = nn.initializers.normal(EMBED**-0.5)
        h = nn.Dense(EMBED, use_bias=False, name="w_in",
                     kernel_init=logical(nn.initializers.lecun_normal(), (None, "embed")))(x)
        h = nn.with_logical_constraint(h, ("batch", "length", "embed"))
        qkv = self.param("qkv", logical(normal, ("embed", None, "heads", "kv")), (EMBED, 3, HEADS, KV))
        out = self.param("out", logical(normal, ("heads", "kv", "embed")), (HEADS, KV, EMBED))
        h = h + attention(h, qkv, out)
        hidden = nn.relu(nn.Dense(MLP, name="mlp_in",
                                  kernel_init=logical(nn.initializers.lecun_normal(), ("embed", "mlp")),
                                  bias_init=logical(nn.initializers.zeros_init(), ("mlp",)))(h))
        hidden = nn.with_logical_constraint(hidden, ("batch", "length", "mlp"))
        h = h + nn.Dense(EMBED, use_bias=False, name="mlp_out",
                         kernel_init=logical(nn.initializers.lecun_normal(), ("mlp", "embed")))(hidden)
        h = nn.LayerNorm(use_bias=False, name="norm",
                         scale_init=logical(nn.initializers.ones_init(), ("norm",)))(h)
        return nn.Dense(VOCAB, use_bias=False, name="head",
                        kernel_init=logical(nn.initializers.lecun_normal(), ("embed", "vocab")))(h.mean(axis=1))


def linen_params(params):
    value = lambda box: box.value  # noqa: E731 - boxes keep their metadata in the state
    return {
        "w_in": value(params["w_in"]["kernel"]), "qkv": value(params["qkv"]),
        "out": value(params["out"]), "mlp_in": value(params["mlp_in"]["kernel"]),
        "mlp_in_bias": value(params["mlp_in"]["bias"]),
        "mlp_out": value(params["mlp_out"]["kernel"]),
        "norm_scale": value(params["norm"]["scale"]), "head": value(params["head"]["kernel"]),
    }


MODEL = LinenBlock()
TX = optax.adam(1e-2)  # one object: train states built from it have equal static fields
SAMPLE = jnp.zeros((1, LENGTH, FEATURES))


def create_linen(key):
    variables = MODEL.init(key, SAMPLE)
    return TrainState.create(apply_fn=MODEL.apply, params=variables["params"], tx=TX)


def linen_train_step(state, batch):
    def loss_fn(params):
        return cross_entropy(state.apply_fn({"params": params}, batch["x"]), batch["y"])

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    return state.apply_gradients(grads=grads), loss


def train_linen(mesh):
    state = sharded_init(create_linen, mesh, RULES, jax.random.key(0))
    born = {k: (v.sharding.spec, shard_shapes(v), np.asarray(v))
            for k, v in linen_params(state.params).items()}
    shardings = abstract_shardings(jax.eval_shape(create_linen, jax.random.key(0)), mesh, RULES)
    losses = []
    with jax.set_mesh(mesh), logical_axis_rules(RULES):
        step = jax.jit(linen_train_step, out_shardings=(shardings, NamedSharding(mesh, P())),
                       donate_argnums=0)
        for batch in batches():
            state, loss = step(state, global_batch(batch, mesh))
            losses.append(float(loss))
    return born, state, losses


@pytest.fixture(scope="module")
def linen_reference():
    return train_linen(one_device_mesh())


@pytest.mark.parametrize("mesh_name", sorted(MESHES))
def test_linen_sharded_training_matches_one_device(mesh_name, linen_reference):
    axes = MESHES[mesh_name]
    mesh = make_mesh(axes)
    born, state, losses = train_linen(mesh)
    ref_born, ref_state, ref_losses = linen_reference
    for name, (spec, shape) in expected_layout(axes).items():
        assert born[name][:2] == (spec, {shape}), name
        np.testing.assert_array_equal(born[name][2], ref_born[name][2])
    params = linen_params(state.params)
    check_layout(params, axes, mesh)
    mu = state.opt_state[0].mu
    assert mu["mlp_in"]["kernel"].value.sharding.spec == P("fsdp", "tensor")
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    assert ref_losses[-1] < ref_losses[0]
    ref_params = linen_params(ref_state.params)
    for name, value in params.items():
        np.testing.assert_allclose(np.asarray(value), np.asarray(ref_params[name]), atol=2e-5)


def test_linen_flax_recipe_get_partition_spec_then_logical_to_mesh_sharding():
    mesh = make_mesh(MESHES["data2-tensor4"])
    abstract = jax.eval_shape(MODEL.init, jax.random.key(0), SAMPLE)
    logical_specs = nn.get_partition_spec(abstract)
    assert logical_specs["params"]["mlp_in"]["kernel"] == P("embed", "mlp")
    shardings = nn.logical_to_mesh_sharding(logical_specs, mesh, RULES)
    variables = jax.jit(MODEL.init, out_shardings=shardings)(jax.random.key(0), SAMPLE)
    check_layout(linen_params(variables["params"]), MESHES["data2-tensor4"], mesh)
