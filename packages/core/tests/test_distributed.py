"""plait.core.distributed: meshes, sharded init / train steps, global batches, processes.

The model is plain JAX on a core State of Param Variables, so this runs in the core's own
environment; the nnx and linen versions live in plait-examples-vision's tests.
"""

import doctest
import os
import socket
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P
from plait.core import (
    Object,
    Param,
    State,
    distributed,
    get_logical_axis_rules,
    logical_axis_rules,
    with_logical_constraint,
)
from plait.core.distributed import (
    abstract_shardings,
    default_logical_rules,
    global_batch,
    initialize_distributed,
    make_mesh,
    process_batch_slice,
    sharded_init,
)

RULES = default_logical_rules()
FEATURES, EMBED, MLP, VOCAB, BATCH = 6, 16, 32, 8, 16


def _shard_shapes(x):
    return {tuple(s.data.shape) for s in x.addressable_shards}


# --------------------------------------------------------------------------- mesh


def test_make_mesh_sizes_order_and_wildcard():
    mesh = make_mesh({"data": -1, "fsdp": 2, "tensor": 1})
    assert mesh.axis_names == ("data", "fsdp", "tensor")
    assert dict(mesh.shape) == {"data": 4, "fsdp": 2, "tensor": 1}
    assert mesh.axis_types == (AxisType.Auto,) * 3
    assert list(mesh.devices.flat) == jax.devices()

    mesh = make_mesh([("tensor", 4), ("data", -1)], axis_types=AxisType.Explicit)
    assert dict(mesh.shape) == {"tensor": 4, "data": 2}
    assert mesh.axis_types == (AxisType.Explicit,) * 2


def test_make_mesh_accepts_config_objects_and_device_subsets():
    class Config:  # what ml_collections.ConfigDict offers: items()
        def items(self):
            return [("data", 2), ("tensor", -1)]

    mesh = make_mesh(Config(), devices=jax.devices()[:4])
    assert dict(mesh.shape) == {"data": 2, "tensor": 2}
    assert set(mesh.devices.flat) == set(jax.devices()[:4])


@pytest.mark.parametrize(
    ("axes", "error", "match"),
    [
        ({"data": -1, "tensor": -1}, ValueError, "at most one axis"),
        ({"data": 3}, ValueError, "needs 3 devices but 8"),
        ({"data": -1, "tensor": 3}, ValueError, "does not divide the 8 devices"),
        ({"data": 0}, ValueError, "sizes are positive"),
        ({"data": 2.0}, TypeError, "must be an int"),
        ({}, ValueError, "at least one axis"),
        ([("data", 2, 1)], TypeError, "is not a \\(name, size\\) pair"),
        (8, TypeError, "expects a mapping"),
        ([("data", 2), ("data", 4)], ValueError, "more than once"),
    ],
)
def test_make_mesh_errors(axes, error, match):
    with pytest.raises(error, match=match):
        make_mesh(axes)


def test_make_mesh_axis_types_count_is_checked():
    with pytest.raises(ValueError, match="1 axis_types for the 2 axes"):
        make_mesh({"data": 4, "tensor": 2}, axis_types=[AxisType.Auto])


# --------------------------------------------------------------------------- rules


def test_default_rules_split_params_and_activations_without_conflicts():
    from plait.core import logical_to_mesh_axes

    assert logical_to_mesh_axes(("batch", "length", "embed"), RULES) == P(
        ("data", "fsdp"), None, None
    )
    assert logical_to_mesh_axes(("embed", "heads", "kv"), RULES) == P("fsdp", "tensor", None)
    assert logical_to_mesh_axes(("vocab", "embed"), RULES) == P("tensor", "fsdp")
    assert logical_to_mesh_axes(("batch", "mlp"), RULES) == P(("data", "fsdp"), "tensor")


# --------------------------------------------------------------------------- shardings


def _abstract(shape, names=None, **metadata):
    struct = jax.ShapeDtypeStruct(shape, jnp.float32)
    if names is None and not metadata:
        return Param(struct)
    return Param(struct, sharding_names=names, **metadata)


def test_abstract_shardings_resolves_logical_and_mesh_names():
    mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    tree = {
        "state": State(
            {
                "kernel": _abstract((8, 4), ("embed", "mlp")),
                "plain_variable": _abstract((3,)),
                "mesh_named": _abstract((4, 4), (None, "data")),
                "tuple_entry": _abstract((8,), (("data", "tensor"),)),
                "own_rules": _abstract((4, 4), ("rows", "embed"), sharding_rules=[("rows", "tensor")]),
            }
        ),
        "array": jax.ShapeDtypeStruct((5,), jnp.int32),
        "python": "not an array",
    }
    out = abstract_shardings(tree, mesh, RULES)
    specs = {k: v.value.spec for k, v in out["state"].items()}
    assert specs == {
        "kernel": P("fsdp", "tensor"),
        "plain_variable": P(),
        "mesh_named": P(None, "data"),
        "tuple_entry": P(("data", "tensor")),
        "own_rules": P("tensor", "fsdp"),
    }
    assert all(v.value.mesh is mesh for v in out["state"].values())
    assert type(out["state"]["kernel"]) is Param
    assert out["state"]["kernel"].sharding_names == ("embed", "mlp")  # metadata kept
    assert out["array"] == NamedSharding(mesh, P())
    assert out["python"] is None


def test_abstract_shardings_uses_active_rules_by_default():
    mesh = make_mesh({"data": 4, "model": 2})
    state = State({"w": _abstract((4, 6), ("embed", "mlp"))})
    with logical_axis_rules([("embed", None), ("mlp", "model")]):
        assert abstract_shardings(state, mesh)["w"].value.spec == P(None, "model")
    assert get_logical_axis_rules() == ()


def test_abstract_shardings_reads_linen_style_boxes():
    from plait.core import struct

    @struct.dataclass
    class Box:  # the protocol of plait.linen's Partitioned / LogicallyPartitioned
        value: object
        names: tuple = struct.field(pytree_node=False)

        def to_nnx_metadata(self):
            return {"sharding_names": self.names}

        def replace_boxed(self, value):
            return Box(value, self.names)

        def unbox(self):
            raise AssertionError("abstract_shardings must read .value, not unbox()")

    mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    variables = {"params": {"w": Box(jax.ShapeDtypeStruct((4, 8), jnp.float32), ("embed", "vocab"))}}
    out = abstract_shardings(variables, mesh, RULES)
    assert isinstance(out["params"]["w"], Box)
    assert out["params"]["w"].value == NamedSharding(mesh, P("fsdp", "tensor"))


@pytest.mark.parametrize(
    ("variable", "match"),
    [
        (_abstract((4, 4), ("embd", None)), r"\['w'\] names the axis 'embd'.*\('embd', None\)"),
        (_abstract((6, 4), (None, "mlp")), None),  # fits: tensor (2) divides 4
        (_abstract((4, 6), (None, "vocab")), None),
        (_abstract((4, 3), (None, "mlp")), r"dimension 1 \(3\) is named 'mlp'.*size 2"),
        (_abstract((4,), ("embed", "mlp")), r"shape \(4,\) but 2 sharding names"),
    ],
)
def test_abstract_shardings_errors_name_the_path(variable, match):
    mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    state = State({"w": variable})
    if match is None:
        assert isinstance(abstract_shardings(state, mesh, RULES)["w"].value, NamedSharding)
    else:
        with pytest.raises(ValueError, match=match):
            abstract_shardings(state, mesh, RULES)


def test_abstract_shardings_rejects_rules_naming_missing_mesh_axes():
    mesh = make_mesh({"data": 8})  # no fsdp / tensor axes
    with pytest.raises(ValueError, match=r"names \['fsdp'\]: not axes of the mesh"):
        abstract_shardings(State({"w": _abstract((8, 8), ("embed", None))}), mesh, RULES)


# --------------------------------------------------------------------------- model


def init_params(key):
    k_in, k1, k2, k_out = jax.random.split(key, 4)

    def normal(k, shape):
        return jax.random.normal(k, shape) / np.sqrt(shape[0])

    return State(
        {
            "w_in": Param(normal(k_in, (FEATURES, EMBED)), sharding_names=(None, "embed")),
            "w1": Param(normal(k1, (EMBED, MLP)), sharding_names=("embed", "mlp")),
            "b1": Param(jnp.zeros(MLP), sharding_names=("mlp",)),
            "w2": Param(normal(k2, (MLP, EMBED)), sharding_names=("mlp", "embed")),
            "scale": Param(jnp.ones(EMBED), sharding_names=("norm",)),
            "head": Param(normal(k_out, (EMBED, VOCAB)), sharding_names=("embed", "vocab")),
        }
    )


def loss_fn(params, batch):
    h = batch["x"] @ params["w_in"]
    hidden = jax.nn.relu(h @ params["w1"] + params["b1"][None, :])
    hidden = with_logical_constraint(hidden, ("batch", "mlp"))
    h = (h + hidden @ params["w2"]) * params["scale"][None, :]
    logits = h @ params["head"]
    log_probs = jax.nn.log_softmax(logits)
    picked = jnp.take_along_axis(log_probs, batch["y"][:, None], axis=1)
    return -picked.mean()


def sgd_step(params, batch):
    loss, grads = jax.value_and_grad(loss_fn)(params, batch)
    return jax.tree.map(lambda p, g: p - 0.5 * g, params, grads), loss


def make_batches(steps):
    rng = np.random.default_rng(0)
    return [
        {
            "x": rng.standard_normal((BATCH, FEATURES)).astype(np.float32),
            "y": rng.integers(0, VOCAB, BATCH).astype(np.int32),
        }
        for _ in range(steps)
    ]


def train(mesh, steps=4):
    """The recipe: sharded init, a jit-ed step with shardings, global batches."""
    params = sharded_init(init_params, mesh, RULES, jax.random.key(0))
    shardings = abstract_shardings(jax.eval_shape(init_params, jax.random.key(0)), mesh, RULES)
    replicated = NamedSharding(mesh, P())
    with jax.set_mesh(mesh), logical_axis_rules(RULES):
        step = jax.jit(sgd_step, out_shardings=(shardings, replicated), donate_argnums=0)
        # What init gave (read now: the step donates its input buffers).
        start = {
            name: (v.value.sharding.spec, _shard_shapes(v.value), np.asarray(v.value))
            for name, v in params.items()
        }
        losses = []
        for batch in make_batches(steps):
            params, loss = step(params, global_batch(batch, mesh))
            losses.append(float(loss))
    return start, params, losses


MESHES = [
    {"data": 8, "fsdp": 1, "tensor": 1},
    {"data": 4, "fsdp": 2, "tensor": 1},
    {"data": 2, "fsdp": 1, "tensor": 4},
]


@pytest.fixture(scope="module")
def reference():
    one_device = make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, devices=jax.devices()[:1])
    return train(one_device)


@pytest.mark.parametrize("axes", MESHES, ids=lambda a: "-".join(f"{k}{v}" for k, v in a.items()))
def test_sharded_training_matches_one_device(axes, reference):
    ref_start, ref_params, ref_losses = reference
    mesh = make_mesh(axes)
    start, params, losses = train(mesh)
    fsdp, tensor = axes["fsdp"], axes["tensor"]
    expected = {
        "w_in": (P(None, "fsdp"), (FEATURES, EMBED // fsdp)),
        "w1": (P("fsdp", "tensor"), (EMBED // fsdp, MLP // tensor)),
        "b1": (P("tensor"), (MLP // tensor,)),
        "w2": (P("tensor", "fsdp"), (MLP // tensor, EMBED // fsdp)),
        "scale": (P(None), (EMBED,)),
        "head": (P("fsdp", "tensor"), (EMBED // fsdp, VOCAB // tensor)),
    }
    for name, (spec, shard_shape) in expected.items():
        assert start[name][:2] == (spec, {shard_shape}), name  # born sharded
        value = params[name].value  # and still sharded after training
        assert value.sharding.spec == spec, name
        assert value.sharding.mesh.shape == mesh.shape
        assert _shard_shapes(value) == {shard_shape}, name
        assert len(value.addressable_shards) == 8
        np.testing.assert_array_equal(start[name][2], ref_start[name][2])
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    assert ref_losses[-1] < ref_losses[0]
    for name in expected:
        np.testing.assert_allclose(
            np.asarray(params[name].value), np.asarray(ref_params[name].value), rtol=1e-4, atol=1e-5
        )


class TinyModel(Object):
    def __init__(self, key):
        self.kernel = Param(jax.random.normal(key, (8, 4)), sharding_names=("embed", "mlp"))
        self.bias = Param(jnp.zeros(4), sharding_names=("mlp",))
        self.shared = self.kernel  # a shared reference survives the split/merge


def test_sharded_init_returns_graph_nodes_merged():
    mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    model = sharded_init(TinyModel, mesh, RULES, jax.random.key(1))
    assert isinstance(model, TinyModel)
    assert model.shared is model.kernel
    assert model.kernel.value.sharding.spec == P("fsdp", "tensor")
    assert _shard_shapes(model.kernel.value) == {(4, 2)}
    assert model.bias.value.sharding.spec == P("tensor")
    eager = TinyModel(jax.random.key(1))  # same values (up to XLA's fusion of the sampler)
    np.testing.assert_allclose(np.asarray(model.kernel.value), eager.kernel.value, rtol=1e-6)


def test_sharded_init_merges_containers_of_graph_nodes():
    mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})

    def init(key):
        model = TinyModel(key)
        return {"model": model, "same": model, "step": jnp.zeros((), jnp.int32)}

    out = sharded_init(init, mesh, RULES, jax.random.key(1))
    assert type(out) is dict and isinstance(out["model"], TinyModel)
    assert out["same"] is out["model"]
    assert out["model"].kernel.value.sharding.spec == P("fsdp", "tensor")
    assert out["step"].sharding == NamedSharding(mesh, P())
    pair = sharded_init(lambda key: (jnp.ones(2), TinyModel(key)), mesh, RULES, jax.random.key(1))
    assert type(pair) is tuple and isinstance(pair[1], TinyModel)
    assert pair[1].bias.value.sharding.spec == P("tensor") and pair[0].shape == (2,)


def test_sharded_init_activates_rules_while_tracing():
    seen = []

    def init(key):
        seen.append(get_logical_axis_rules())
        return {"w": jax.random.normal(key, (8,))}

    mesh = make_mesh({"data": 8})
    out = sharded_init(init, mesh, [("embed", None)], jax.random.key(0))
    assert out["w"].sharding == NamedSharding(mesh, P())
    assert seen and all(r == [("embed", None)] for r in seen)


# --------------------------------------------------------------------------- batches


def test_global_batch_single_process():
    mesh = make_mesh({"data": 4, "fsdp": 1, "tensor": 2})
    local = {"x": np.arange(8 * 3, dtype=np.float32).reshape(8, 3), "y": np.arange(8)}
    batch = global_batch(local, mesh)
    assert batch["x"].sharding.spec == P(("data", "fsdp"))
    assert _shard_shapes(batch["x"]) == {(2, 3)}
    np.testing.assert_array_equal(np.asarray(batch["x"]), local["x"])
    np.testing.assert_array_equal(np.asarray(batch["y"]), local["y"])
    only_data = global_batch(local, make_mesh({"data": 8}))
    assert only_data["x"].sharding.spec == P("data")
    wide = np.arange(8 * 4, dtype=np.float32).reshape(8, 4)
    custom = global_batch(wide, mesh, P(None, "tensor"))
    assert custom.shape == (8, 4) and _shard_shapes(custom) == {(8, 2)}
    np.testing.assert_array_equal(np.asarray(custom), wide)
    assert process_batch_slice(8, mesh) == slice(0, 8)


def test_global_batch_errors():
    mesh = make_mesh({"data": 4, "tensor": 2})
    with pytest.raises(ValueError, match=r"\['x'\] has 6 entries along dimension 0.*multiple of 4"):
        global_batch({"x": np.zeros((6, 2))}, mesh)
    with pytest.raises(ValueError, match=r"shape \(\), fewer dimensions"):
        global_batch({"x": np.float32(1)}, mesh)
    with pytest.raises(ValueError, match="'fsdp', which is not an axis"):
        global_batch({"x": np.zeros(8)}, mesh, P("fsdp"))
    with pytest.raises(ValueError, match="10 rows does not split into the 4 shards"):
        process_batch_slice(10, mesh)


# --------------------------------------------------------------------------- processes


@pytest.fixture
def no_distributed_env(monkeypatch):
    for name in ("JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "JAX_COORDINATOR_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_initialize_distributed_single_process_is_a_no_op(no_distributed_env):
    assert initialize_distributed() is False
    assert initialize_distributed(num_processes=1) is False
    no_distributed_env.setenv("JAX_NUM_PROCESSES", "1")
    assert initialize_distributed() is False
    assert not jax.distributed.is_initialized()


@pytest.mark.parametrize(
    ("kwargs", "env", "match"),
    [
        ({"coordinator": "127.0.0.1:1234"}, {}, "not the number of processes"),
        ({"num_processes": 2, "coordinator": "127.0.0.1:1"}, {}, r"process_id must be in \[0, 2\)"),
        ({"num_processes": 2, "process_id": 2, "coordinator": "h:1"}, {}, "got 2"),
        ({"num_processes": 2, "process_id": 0}, {}, "must be 'host:port'"),
        ({"num_processes": 2, "process_id": 0, "coordinator": "localhost"}, {}, "got 'localhost'"),
        ({}, {"JAX_NUM_PROCESSES": "two"}, "JAX_NUM_PROCESSES='two' is not an integer"),
        ({}, {"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"}, "must be 'host:port'"),
        ({"num_processes": 0}, {}, "at least 1"),
    ],
)
def test_initialize_distributed_errors(no_distributed_env, kwargs, env, match):
    for name, value in env.items():
        no_distributed_env.setenv(name, value)
    with pytest.raises(ValueError, match=match):
        initialize_distributed(**kwargs)
    assert not jax.distributed.is_initialized()


WORKER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from plait.core.distributed import (
        global_batch, initialize_distributed, make_mesh, process_batch_slice)

    assert initialize_distributed(initialization_timeout=60)  # from the JAX_* variables
    import jax
    assert jax.process_count() == 2 and jax.device_count() == 4
    mesh = make_mesh({"data": -1, "tensor": 1})
    full = np.arange(8 * 3, dtype=np.float32).reshape(8, 3)
    rows = process_batch_slice(8, mesh)
    batch = global_batch({"x": full[rows]}, mesh)
    assert batch["x"].shape == (8, 3), batch["x"].shape
    for shard in batch["x"].addressable_shards:
        np.testing.assert_array_equal(np.asarray(shard.data), full[shard.index])
    weights = np.repeat(np.arange(1, 9, dtype=np.float32)[:, None], 3, axis=1)
    total = jax.jit(lambda b: (b["x"] * weights).sum())(batch)
    print(f"OK {jax.process_index()} rows={rows.start}:{rows.stop} total={float(total)}", flush=True)
    jax.distributed.shutdown()
    """
)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_initialize_from_env_and_assemble_a_global_batch(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    port = _free_port()
    base = dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
        JAX_PLATFORMS="cpu",
        JAX_NUM_PROCESSES="2",
        JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
    )
    children = [
        subprocess.Popen(
            [sys.executable, str(script)],
            env={**base, "JAX_PROCESS_ID": str(i)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    deadline = time.monotonic() + 60
    outputs = []
    try:
        for child in children:
            out, _ = child.communicate(timeout=max(1.0, deadline - time.monotonic()))
            outputs.append(out)
    except subprocess.TimeoutExpired:
        pytest.fail("the two processes did not finish within 60 s")
    finally:
        for child in children:  # never leave a child behind
            if child.poll() is None:
                child.kill()
            child.wait()
    report = "\n".join(f"--- process {i} ---\n{out[-2000:]}" for i, out in enumerate(outputs))
    expected_total = float((np.arange(24).reshape(8, 3) * np.arange(1, 9)[:, None]).sum())
    for i, rows in enumerate(("0:4", "4:8")):
        assert children[i].returncode == 0, report
        assert f"OK {i} rows={rows} total={expected_total}" in outputs[i], report


def test_docstring_examples_run():
    result = doctest.testmod(distributed, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 8 and result.failed == 0
