"""Untrusted bytes never crash decoding: every failure is a MsgpackDecodeError."""

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plait.core import FrozenDict, serialization, struct

FUZZ = settings(
    max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


@struct.dataclass
class Holder:
    weights: dict
    step: int
    name: str = struct.field(pytree_node=False, default="h")


def _target():
    return Holder(
        weights={
            "kernel": np.arange(12, dtype=np.float32).reshape(3, 4),
            "bias": np.ones(4, np.float16),
            "emb": np.asarray(jnp.ones((2, 2), jnp.bfloat16)),
            "big": np.arange(40, dtype=np.int32),  # chunked under the patched limit below
            "frozen": FrozenDict(c=np.complex64(1 + 1j)),
            "layers": [np.zeros(2, np.uint8), (np.bool_(True), 3.5)],
        },
        step=7,
    )


@pytest.fixture(scope="module")
def valid_payload():
    previous = serialization.MAX_CHUNK_SIZE
    serialization.MAX_CHUNK_SIZE = 64
    try:
        return serialization.to_bytes(_target())
    finally:
        serialization.MAX_CHUNK_SIZE = previous


def _decode_or_decode_error(data: bytes):
    try:
        return serialization.msgpack_restore(data)
    except serialization.MsgpackDecodeError:
        return None


def test_valid_payload_round_trips(valid_payload):
    restored = serialization.from_bytes(_target(), valid_payload)
    np.testing.assert_array_equal(restored.weights["big"], np.arange(40))
    assert restored.weights["frozen"]["c"] == np.complex64(1 + 1j)
    assert restored.step == 7


@FUZZ
@given(st.binary(max_size=256))
def test_random_bytes(data):
    _decode_or_decode_error(data)


@FUZZ
@given(st.data())
def test_truncated_payloads_always_fail_cleanly(valid_payload, data):
    cut = data.draw(st.integers(0, len(valid_payload) - 1))
    with pytest.raises(serialization.MsgpackDecodeError):
        serialization.msgpack_restore(valid_payload[:cut])


@FUZZ
@given(st.data())
def test_bit_flips_fail_cleanly_or_restore(valid_payload, data):
    corrupted = bytearray(valid_payload)
    for _ in range(data.draw(st.integers(1, 4))):
        bit = data.draw(st.integers(0, len(corrupted) * 8 - 1))
        corrupted[bit // 8] ^= 1 << (bit % 8)
    try:
        serialization.from_bytes(_target(), bytes(corrupted))
    except serialization.SerializationError:
        pass  # MsgpackDecodeError or StateDictMismatchError: both name what is wrong


_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.complex_numbers(allow_nan=False, allow_infinity=False),
    st.lists(st.floats(-1e3, 1e3), max_size=6).map(lambda xs: np.asarray(xs, np.float32)),
    st.integers(-100, 100).map(np.int16),
)
_trees = st.recursive(
    _leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=6), children, max_size=4),
    ),
    max_leaves=20,
)


def _assert_same(a, b):
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys()
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same(x, y)
    elif isinstance(a, (np.ndarray, np.generic)):
        assert type(a) is type(b) and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    else:
        assert type(a) is type(b) and a == b


@FUZZ
@given(_trees)
def test_arbitrary_state_dicts_round_trip(tree):
    _assert_same(tree, serialization.msgpack_restore(serialization.msgpack_serialize(tree)))
