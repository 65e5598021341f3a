import collections

import jax
import jax.numpy as jnp
import msgpack
import numpy as np
import pytest
from plait.core import BatchStat, Object, Param, State, serialization, split, update

DTYPES = [
    np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
    np.uint64, np.float16, np.float32, np.float64, np.complex64, np.complex128,
    jnp.bfloat16, jnp.float8_e4m3fn, jnp.float8_e5m2, jnp.int4,
]  # fmt: skip


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_array_round_trip_all_dtypes(dtype):
    arr = np.arange(6).reshape(2, 3).astype(dtype)
    back = serialization.msgpack_restore(serialization.msgpack_serialize({"a": arr}))["a"]
    assert back.dtype == np.dtype(dtype) and back.shape == (2, 3)
    np.testing.assert_array_equal(back.astype(np.complex128), arr.astype(np.complex128))


def test_jax_arrays_scalars_and_python_leaves():
    tree = {
        "jax": jnp.ones((2, 2), jnp.bfloat16),
        "np_scalar": np.float32(1.5),
        "np_int": np.int64(7),
        "complex": 1 + 2j,
        "float": 0.25,
        "int": -(2**63),
        "none": None,
        "text": "hi",
        "raw": b"\x00\x01",
        "flag": True,
        "empty": np.zeros((0, 3), np.float32),
        "list": [1, (2, 3)],
    }
    back = serialization.msgpack_restore(serialization.msgpack_serialize(tree))
    assert back["jax"].dtype == jnp.bfloat16 and back["jax"].shape == (2, 2)
    assert type(back["np_scalar"]) is np.float32 and back["np_scalar"] == 1.5
    assert type(back["np_int"]) is np.int64
    assert back["complex"] == 1 + 2j and back["int"] == -(2**63)
    assert back["none"] is None and back["text"] == "hi" and back["raw"] == b"\x00\x01"
    assert back["flag"] is True and back["empty"].shape == (0, 3)
    assert back["list"] == [1, [2, 3]]


def test_wire_format_is_flax_compatible():
    # A payload built by hand in Flax's documented layout decodes here.
    arr = np.arange(4, dtype=np.float32)
    ext = msgpack.ExtType(1, msgpack.packb(((4,), "float32", arr.tobytes()), use_bin_type=True))
    scalar = msgpack.ExtType(
        3, msgpack.packb(((), "int32", np.int32(5).tobytes()), use_bin_type=True)
    )
    cplx = msgpack.ExtType(2, msgpack.packb((1.0, -1.0)))
    payload = msgpack.packb({"w": ext, "s": scalar, "c": cplx}, use_bin_type=True)
    back = serialization.msgpack_restore(payload)
    np.testing.assert_array_equal(back["w"], arr)
    assert back["s"] == np.int32(5) and back["c"] == 1 - 1j
    # ... and what we write is that layout.
    assert serialization.msgpack_serialize({"w": arr}) == msgpack.packb(
        {"w": ext}, use_bin_type=True
    )


def test_large_arrays_are_chunked(monkeypatch):
    monkeypatch.setattr(serialization, "MAX_CHUNK_SIZE", 16)
    arr = np.arange(30, dtype=np.float32).reshape(5, 6)  # 120 bytes -> 8 chunks of 4 floats
    data = serialization.msgpack_serialize({"big": arr, "small": np.ones(2, np.float32)})
    raw = msgpack.unpackb(data, raw=False)
    assert raw["big"]["__msgpack_chunked_array__"] is True and len(raw["big"]["chunks"]) == 8
    back = serialization.msgpack_restore(data)
    np.testing.assert_array_equal(back["big"], arr)
    np.testing.assert_array_equal(back["small"], np.ones(2))


def test_to_state_dict_containers():
    Nt = collections.namedtuple("Nt", ["a", "b"])
    state = serialization.to_state_dict({"l": [1, 2], "t": (3,), "n": Nt(4, 5), 7: "k"})
    assert state == {"l": {"0": 1, "1": 2}, "t": {"0": 3}, "n": {"a": 4, "b": 5}, "7": "k"}
    target = {"l": [0, 0], "t": (0,), "n": Nt(0, 0), 7: ""}
    restored = serialization.from_state_dict(target, state)
    assert restored == {"l": [1, 2], "t": (3,), "n": Nt(4, 5), 7: "k"}
    assert type(restored["t"]) is tuple and type(restored["n"]) is Nt


def test_from_bytes_round_trip_of_nested_params():
    params = {"dense": {"kernel": jnp.ones((3, 2)), "bias": jnp.zeros(2)}, "step": 3}
    target = jax.tree.map(jnp.zeros_like, params)
    back = serialization.from_bytes(target, serialization.to_bytes(params))
    assert jax.tree.structure(back) == jax.tree.structure(params)
    np.testing.assert_array_equal(back["dense"]["kernel"], np.ones((3, 2)))
    assert back["step"] == 3


def test_mismatch_errors_name_the_path():
    target = {"params": {"dense": {"kernel": np.zeros((3, 2)), "bias": np.zeros(2)}}}
    good = serialization.to_state_dict(target)

    missing = {"params": {"dense": {"kernel": np.zeros((3, 2))}}}
    with pytest.raises(
        serialization.StateDictMismatchError,
        match=r"missing from the state: \['bias'\].*at path './params/dense'",
    ):
        serialization.from_state_dict(target, missing)

    extra = {"params": {"dense": {**good["params"]["dense"], "scale": 1}}}
    with pytest.raises(
        serialization.StateDictMismatchError, match=r"not in the target: \['scale'\]"
    ):
        serialization.from_state_dict(target, extra)

    wrong_shape = {"params": {"dense": {"kernel": np.zeros((2, 3)), "bias": np.zeros(2)}}}
    with pytest.raises(
        serialization.StateDictMismatchError,
        match=r"target array has shape \(3, 2\).*shape \(2, 3\).*'./params/dense/kernel'",
    ):
        serialization.from_state_dict(target, wrong_shape)

    with pytest.raises(
        serialization.StateDictMismatchError, match=r"Expected an array of shape \(2,\)"
    ):
        serialization.from_state_dict({"b": np.zeros(2)}, {"b": {"x": 1}})
    with pytest.raises(
        serialization.StateDictMismatchError, match="Expected a state dict .* got int"
    ):
        serialization.from_state_dict({"a": 1}, 5)
    with pytest.raises(
        serialization.StateDictMismatchError, match=r"missing from the state: \['2'\]"
    ):
        serialization.from_state_dict([1, 2, 3], {"0": 1, "1": 2})
    assert serialization.current_path() == ""  # the path stack unwinds on errors


def test_mismatch_error_is_a_value_error():
    assert issubclass(serialization.StateDictMismatchError, ValueError)
    assert issubclass(serialization.MsgpackDecodeError, ValueError)


def test_current_path_inside_custom_handler():
    seen = []

    class Leafy:
        pass

    serialization.register_serialization_state(
        Leafy, lambda x: {}, lambda x, s: seen.append(serialization.current_path()) or x
    )
    serialization.from_state_dict({"outer": [Leafy()]}, {"outer": {"0": {}}})
    assert seen == ["./outer/0"]
    with pytest.raises(ValueError, match="already registered; pass override=True"):
        serialization.register_serialization_state(Leafy, lambda x: {}, lambda x, s: x)
    serialization.register_serialization_state(Leafy, lambda x: {}, lambda x, s: x, override=True)
    assert serialization.is_serializable(Leafy()) and not serialization.is_serializable(Leafy)


def test_unserializable_leaves_are_type_errors_with_paths():
    with pytest.raises(TypeError, match=r"Cannot serialize builtins.object at 'a/0'"):
        serialization.msgpack_serialize({"a": [object()]})
    with pytest.raises(TypeError, match="Dict key 3 .* is not a string"):
        serialization.msgpack_serialize({"a": {3: 1}})
    with pytest.raises(TypeError, match="dtype object at 'x'"):
        serialization.msgpack_serialize({"x": np.array([None])})
    with pytest.raises(serialization.SerializationError, match="does not fit in 64 bits"):
        serialization.msgpack_serialize({"x": 2**70})
    with pytest.raises(TypeError, match="expects bytes, got str"):
        serialization.msgpack_restore("not bytes")


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"\x81\xa1a", "Could not decode"),  # truncated map
        (msgpack.packb({"a": msgpack.ExtType(9, b"")}), "Unknown msgpack extension type 9"),
        (
            msgpack.packb(msgpack.ExtType(1, msgpack.packb(([2], "object", b"12345678")))),
            "unsupported dtype",
        ),
        (
            msgpack.packb(msgpack.ExtType(1, msgpack.packb(([3], "float32", b"1234")))),
            "needs 12 bytes",
        ),
        (msgpack.packb(msgpack.ExtType(1, msgpack.packb(([-1], "float32", b"")))), "invalid shape"),
        (msgpack.packb(msgpack.ExtType(3, msgpack.packb(([2], "int8", b"12")))), "scalar record"),
        (msgpack.packb(msgpack.ExtType(2, msgpack.packb(("a", 1)))), "not a \\(real, imag\\) pair"),
        (
            msgpack.packb({"__msgpack_chunked_array__": True, "shape": {}, "chunks": {}}),
            "chunked array",
        ),
        (msgpack.packb(msgpack.Timestamp(1)), "holds a Timestamp"),
    ],
)
def test_malformed_payloads(payload, message):
    with pytest.raises(serialization.MsgpackDecodeError, match=message):
        serialization.msgpack_restore(payload)


def test_deeply_nested_payload_is_rejected_cleanly():
    with pytest.raises(serialization.MsgpackDecodeError, match="Could not decode"):
        serialization.msgpack_restore(b"\x91" * 5000 + b"\x01")
    # Within msgpack's nesting limit decoding works without Python recursion.
    nested = b"\x91" * 1000 + b"\x01"
    value = serialization.msgpack_restore(nested)
    for _ in range(1000):
        value = value[0]
    assert value == 1


# --------------------------------------------------------------------------- core State


def _model_state():
    return State(
        {
            "layers": {
                0: {"kernel": Param(jnp.ones((2, 3)), sharding_names=("a", None))},
                1: {"kernel": Param(jnp.full((3, 1), 2.0))},
            },
            "norm": {"mean": BatchStat(jnp.zeros(3))},
        }
    )


def test_state_to_state_dict_is_nested_values():
    state = serialization.to_state_dict(_model_state())
    assert set(state) == {"layers", "norm"} and set(state["layers"]) == {"0", "1"}
    assert isinstance(state["layers"]["0"]["kernel"], jax.Array)  # values, not Variables
    np.testing.assert_array_equal(state["norm"]["mean"], np.zeros(3))


def test_state_round_trip_restores_into_target_variables():
    saved = jax.tree.map(lambda x: x + 1, _model_state())
    target = _model_state()
    restored = serialization.from_bytes(target, serialization.to_bytes(saved))
    assert isinstance(restored, State)
    kernel = restored["layers"][0]["kernel"]
    assert type(kernel) is Param and kernel.sharding_names == ("a", None)  # metadata kept
    assert type(restored["norm"]["mean"]) is BatchStat
    np.testing.assert_array_equal(kernel.value, 2 * np.ones((2, 3)))
    np.testing.assert_array_equal(target["layers"][0]["kernel"].value, np.ones((2, 3)))  # untouched


def test_state_mismatch_errors_name_the_path():
    state = serialization.to_state_dict(_model_state())
    state["layers"]["1"]["kernel"] = np.zeros((1, 3))
    with pytest.raises(
        serialization.StateDictMismatchError, match=r"shape \(3, 1\).*'./layers/1/kernel'"
    ):
        serialization.from_state_dict(_model_state(), state)
    del state["norm"]
    with pytest.raises(
        serialization.StateDictMismatchError, match=r"missing from the state: \['norm'\]"
    ):
        serialization.from_state_dict(_model_state(), state)


def test_single_variable_round_trip():
    p = Param(np.arange(3.0), tag="x")
    back = serialization.from_bytes(Param(np.zeros(3), tag="x"), serialization.to_bytes(p))
    assert type(back) is Param and back.tag == "x"
    np.testing.assert_array_equal(back.value, np.arange(3.0))


def test_graph_split_serialize_update_round_trip():
    class Linear(Object):
        def __init__(self):
            self.w = Param(jnp.ones((2, 2)))
            self.b = Param(jnp.zeros(2))

    model = Linear()
    _, state = split(model)
    data = serialization.to_bytes(jax.tree.map(lambda x: x * 5, state))
    update(model, serialization.from_bytes(state, data))
    np.testing.assert_array_equal(model.w.value, 5 * np.ones((2, 2)))
