"""State dicts and msgpack bytes for pytrees (never pickle).

Two layers:

* ``to_state_dict`` / ``from_state_dict`` turn a registered object (dict, list, tuple,
  namedtuple, ``FrozenDict``, ``struct`` dataclasses, core ``State`` and ``Variable`` and
  their subclasses, and anything added with ``register_serialization_state``) into a nested dict of string keys
  and leaves, and restore such a dict *into* a target of the same structure. Restoring
  checks the structure: a missing key, an unexpected key or an array of the wrong shape is
  a ``StateDictMismatchError`` naming the path (see ``current_path``).
* ``msgpack_serialize`` / ``msgpack_restore`` turn a state dict into bytes and back. The
  wire format is Flax's (arrays as msgpack extension 1 holding ``(shape, dtype name,
  C-order bytes)``, Python complex as extension 2, NumPy scalars as extension 3, arrays
  over ``MAX_CHUNK_SIZE`` bytes split into chunks), so files written by
  ``flax.serialization`` load here and the other way round. Decoding trusts nothing: any
  malformed, truncated or foreign input is a ``MsgpackDecodeError`` (a ``ValueError``).

Example:
  >>> import numpy as np
  >>> from plait.core import serialization
  >>> target = {'w': np.zeros((2,), np.float32), 'steps': 0}
  >>> data = serialization.to_bytes({'w': np.ones((2,), np.float32), 'steps': 3})
  >>> serialization.from_bytes(target, data)
  {'w': array([1., 1.], dtype=float32), 'steps': 3}
"""

from __future__ import annotations

import contextlib
import enum
import math
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

import jax
import jax.numpy as jnp
import msgpack
import numpy as np

from ._errors import PlaitCoreError
from ._state import State
from ._variable import Variable

__all__ = [
    "MAX_CHUNK_SIZE",
    "MsgpackDecodeError",
    "SerializationError",
    "StateDictMismatchError",
    "current_path",
    "from_bytes",
    "from_state_dict",
    "is_serializable",
    "msgpack_restore",
    "msgpack_serialize",
    "register_serialization_state",
    "to_bytes",
    "to_state_dict",
]

# Arrays larger than this many bytes are written as several chunks: msgpack's binary type
# holds at most 4 GiB, and smaller pieces keep peak memory of the packer down.
MAX_CHUNK_SIZE = 2**30


# --------------------------------------------------------------------------- errors


class SerializationError(PlaitCoreError, ValueError):
    """Base class of plait's serialization errors (a ``ValueError``, as in Flax)."""


class MsgpackDecodeError(SerializationError):
    """The bytes are not a msgpack payload written by ``to_bytes`` / ``msgpack_serialize``."""


class StateDictMismatchError(SerializationError):
    """A state dict does not have the structure of the target it is restored into."""


_DECODE_HINT: Final = (
    "The bytes are truncated, corrupted, or were not written by "
    "plait.core.serialization.to_bytes / msgpack_serialize (or flax.serialization)."
)


def _mismatch(what: str, fix: str) -> StateDictMismatchError:
    return StateDictMismatchError(f"{what} at path {current_path()!r}. {fix}")


def _describe(value: Any) -> str:
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"{type(value).__name__} of shape {tuple(value.shape)} and dtype {value.dtype}"
    return type(value).__name__


# --------------------------------------------------------------------------- path stack


class _PathStack(threading.local):
    def __init__(self) -> None:
        self.names: list[str] = []


_path_stack = _PathStack()


@contextlib.contextmanager
def _record_path(name: str) -> Iterator[None]:
    _path_stack.names.append(name)
    try:
        yield
    finally:
        _path_stack.names.pop()


def current_path() -> str:
    """The path ``from_state_dict`` is restoring right now, e.g. ``'./params/kernel'``.

    Restore handlers registered with ``register_serialization_state`` call it to name the
    place of a mismatch in their error messages. Outside a restore it is ``''``.

    Example:
      >>> from plait.core import serialization
      >>> serialization.current_path()
      ''
    """
    return "/".join(_path_stack.names)


# --------------------------------------------------------------------------- registry


class _NamedTuple:
    """Registry key shared by every namedtuple class."""


_Handler = tuple[Callable[[Any], Any], Callable[[Any, Any], Any]]
_REGISTRY: dict[type, _Handler] = {}
# Bases whose subclasses share one handler (Variable and State: their subclasses are
# made at runtime, e.g. one Variable type per Linen collection name).
_BASE_REGISTRY: list[tuple[type, _Handler]] = []


def _is_namedtuple(x: Any) -> bool:
    return isinstance(x, tuple) and hasattr(type(x), "_fields")


def _handler_for(target: Any) -> _Handler | None:
    if _is_namedtuple(target):
        return _REGISTRY[_NamedTuple]
    handler = _REGISTRY.get(type(target))
    if handler is not None:
        return handler
    for base, base_handler in _BASE_REGISTRY:
        if isinstance(target, base):
            return base_handler
    return None


def register_serialization_state(ty, ty_to_state_dict, ty_from_state_dict, override=False):
    """Teaches ``to_state_dict`` / ``from_state_dict`` a new type (exact type match).

    Args:
      ty: the type.
      ty_to_state_dict: ``obj -> state`` (usually a dict with string keys; call
        ``to_state_dict`` on the children).
      ty_from_state_dict: ``(target, state) -> new object``; call
        ``from_state_dict(child, state[key], name=key)`` on the children so that errors
        name the path.
      override: replace an existing handler instead of raising.

    Raises:
      ValueError: ``ty`` already has a handler and ``override`` is False.

    Example:
      >>> from plait.core import serialization
      >>> class Point:
      ...   def __init__(self, x, y):
      ...     self.x, self.y = x, y
      >>> serialization.register_serialization_state(
      ...     Point,
      ...     lambda p: {'x': p.x, 'y': p.y},
      ...     lambda p, s: Point(s['x'], s['y']),
      ... )
      >>> serialization.to_state_dict(Point(1, 2))
      {'x': 1, 'y': 2}
    """
    if ty in _REGISTRY and not override:
        raise ValueError(
            f"A serialization handler for {ty.__module__}.{ty.__qualname__} is already "
            "registered; pass override=True to replace it."
        )
    _REGISTRY[ty] = (ty_to_state_dict, ty_from_state_dict)


def _register_for_subclasses(base: type, ty_to_state_dict, ty_from_state_dict) -> None:
    _BASE_REGISTRY.append((base, (ty_to_state_dict, ty_from_state_dict)))


def is_serializable(target) -> bool:
    """Whether ``target`` (an instance, not a class) has a state-dict handler.

    Example:
      >>> from plait.core import serialization
      >>> serialization.is_serializable({'a': 1}), serialization.is_serializable(1.0)
      (True, False)
    """
    return not isinstance(target, type) and _handler_for(target) is not None


# --------------------------------------------------------------------------- state dicts


def to_state_dict(target) -> dict[str, Any]:
    """Converts ``target`` to a state dict: nested dicts with string keys and leaves.

    Unregistered objects (arrays, scalars, ``None``) are leaves and returned unchanged.

    Example:
      >>> from plait.core import serialization
      >>> serialization.to_state_dict({'layers': [1, (2, 3)]})
      {'layers': {'0': 1, '1': {'0': 2, '1': 3}}}
    """
    handler = _handler_for(target)
    if handler is None:
        return target
    state = handler[0](target)
    if isinstance(state, dict):
        bad = [k for k in state if not isinstance(k, str)]
        if bad:
            raise TypeError(
                f"The state dict handler of {type(target).__name__} returned non-string "
                f"keys {bad!r}; state dict keys must be strings (convert them with str)."
            )
    return state


def from_state_dict(target, state: dict[str, Any], name: str = ".") -> Any:
    """Restores ``state`` into a copy of ``target`` (which is not modified).

    Args:
      target: an object with the structure to restore (its leaves give shapes).
      state: a state dict, e.g. from ``to_state_dict`` or ``msgpack_restore``.
      name: the path component of ``target``, used in error messages.

    Returns:
      An object of ``target``'s type holding the values of ``state``. Leaves of an
      unregistered type are replaced by the corresponding state value.

    Raises:
      StateDictMismatchError: a key is missing or unexpected, a container has the wrong
        length, or an array has another shape than the target's.

    Example:
      >>> from plait.core import serialization
      >>> serialization.from_state_dict([0, 0], {'0': 5, '1': 6})
      [5, 6]
    """
    with _record_path(name):
        return _restore(target, state)


def _restore(target: Any, state: Any) -> Any:
    """``from_state_dict`` without a path component of its own (for wrapper types)."""
    handler = _handler_for(target)
    if handler is None:
        _check_leaf(target, state)
        return state
    return handler[1](target, state)


_ARRAY_TYPES: Final = (np.ndarray, np.generic, jax.Array, jax.ShapeDtypeStruct)
_SCALAR_TYPES: Final = (bool, int, float, complex)


def _check_leaf(target: Any, state: Any) -> None:
    if not isinstance(target, _ARRAY_TYPES):
        return
    target_shape = tuple(target.shape)
    if isinstance(state, _ARRAY_TYPES):
        state_shape = tuple(state.shape)
    elif isinstance(state, _SCALAR_TYPES):
        state_shape = ()
    else:
        raise _mismatch(
            f"Expected an array of shape {target_shape} but the state holds {_describe(state)}",
            "The state dict was written from a different structure than the target.",
        )
    if state_shape != target_shape:
        raise _mismatch(
            f"Shape mismatch: the target array has shape {target_shape} but the state holds "
            f"{_describe(state)}",
            "Build the target with the same shapes as the saved model (same config).",
        )


def _expect_dict(state: Any, target: Any) -> None:
    if not isinstance(state, dict):
        raise _mismatch(
            f"Expected a state dict (dict) to restore a {type(target).__name__}, got "
            f"{_describe(state)}",
            "The state dict was written from a different structure than the target.",
        )


def _check_keys(state: dict, expected: Iterator[str] | list[str], target: Any) -> None:
    """Raises a mismatch error when ``state``'s keys are not exactly ``expected``."""
    expected_set = set(expected)
    missing = sorted(expected_set - state.keys(), key=str)
    unexpected = sorted(state.keys() - expected_set, key=str)
    if not missing and not unexpected:
        return
    parts = []
    if missing:
        parts.append(f"missing from the state: {missing}")
    if unexpected:
        parts.append(f"not in the target: {unexpected}")
    raise _mismatch(
        f"The keys of the state dict and of the target {type(target).__name__} differ "
        f"({'; '.join(parts)})",
        "Restore into a target built like the saved object, or select/convert the "
        "matching part of the state dict first.",
    )


def _dict_to_state(xs: dict) -> dict[str, Any]:
    return {str(k): to_state_dict(v) for k, v in xs.items()}


def _dict_from_state(xs: dict, state: Any) -> dict:
    _expect_dict(state, xs)
    _check_keys(state, [str(k) for k in xs], xs)
    return {k: from_state_dict(v, state[str(k)], name=str(k)) for k, v in xs.items()}


def _seq_to_state(xs: list | tuple) -> dict[str, Any]:
    return {str(i): to_state_dict(v) for i, v in enumerate(xs)}


def _list_from_state(xs: list, state: Any) -> list:
    _expect_dict(state, xs)
    _check_keys(state, [str(i) for i in range(len(xs))], xs)
    return [from_state_dict(v, state[str(i)], name=str(i)) for i, v in enumerate(xs)]


def _tuple_from_state(xs: tuple, state: Any) -> tuple:
    return tuple(_list_from_state(list(xs), state))


def _namedtuple_to_state(nt: Any) -> dict[str, Any]:
    return {field: to_state_dict(getattr(nt, field)) for field in nt._fields}


def _namedtuple_from_state(nt: Any, state: Any) -> Any:
    _expect_dict(state, nt)
    _check_keys(state, list(nt._fields), nt)
    return type(nt)(**{f: from_state_dict(getattr(nt, f), state[f], name=f) for f in nt._fields})


register_serialization_state(dict, _dict_to_state, _dict_from_state)
register_serialization_state(list, _seq_to_state, _list_from_state)
register_serialization_state(tuple, _seq_to_state, _tuple_from_state)
register_serialization_state(_NamedTuple, _namedtuple_to_state, _namedtuple_from_state)


# A Variable's state is its value: metadata is structure, kept by the target.
def _variable_to_state(v: Variable) -> Any:
    return to_state_dict(v.get_raw_value())


def _variable_from_state(v: Variable, state: Any) -> Variable:
    return v.replace(_restore(v.get_raw_value(), state))


# A State's state dict is the nested dict of its Variables' values (string keys).
def _state_to_state(s: State) -> dict[str, Any]:
    return {str(k): to_state_dict(v) for k, v in s.items()}


def _state_from_state(s: State, state: Any) -> State:
    _expect_dict(state, s)
    _check_keys(state, [str(k) for k in s], s)
    return State({k: from_state_dict(v, state[str(k)], name=str(k)) for k, v in s.items()})


_register_for_subclasses(Variable, _variable_to_state, _variable_from_state)
_register_for_subclasses(State, _state_to_state, _state_from_state)


# --------------------------------------------------------------------------- msgpack


class _Ext(enum.IntEnum):
    NDARRAY = 1
    NATIVE_COMPLEX = 2
    NPSCALAR = 3


_CHUNKED: Final = "__msgpack_chunked_array__"
_INT_RANGE: Final = (-(2**63), 2**64 - 1)


def _build_dtype_table() -> dict[str, np.dtype]:
    table = {}
    for name in (
        "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
        "float16", "float32", "float64", "complex64", "complex128",
    ):  # fmt: skip
        table[name] = np.dtype(name)
    for extended in (np.longdouble, np.clongdouble):
        table[np.dtype(extended).name] = np.dtype(extended)
    # Machine-learning dtypes: jax.numpy exposes them (backed by ml_dtypes), so the core
    # needs no import of its own. Names are the ones numpy reports as ``dtype.name``.
    for name in (
        "bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e4m3b11fnuz", "float8_e4m3fnuz",
        "float8_e5m2fnuz", "float8_e3m4", "float8_e4m3", "float8_e8m0fnu", "float4_e2m1fn",
        "int4", "uint4", "int2", "uint2",
    ):  # fmt: skip
        scalar_type = getattr(jnp, name, None)
        if scalar_type is not None:
            table[np.dtype(scalar_type).name] = np.dtype(scalar_type)
    return table


_DTYPES: Final = _build_dtype_table()


def _check_dtype(dtype: np.dtype, path: tuple) -> None:
    if _DTYPES.get(dtype.name) != dtype:
        raise TypeError(
            f"Cannot serialize an array of dtype {dtype} at {_fmt_path(path)}: msgpack "
            f"serialization supports numeric dtypes only ({', '.join(sorted(_DTYPES))})."
        )


def _fmt_path(path: tuple) -> str:
    return "'" + "/".join(str(p) for p in path) + "'" if path else "the root"


def _array_payload(arr: np.ndarray) -> bytes:
    return msgpack.packb((list(arr.shape), arr.dtype.name, arr.tobytes("C")), use_bin_type=True)


def _chunk(arr: np.ndarray) -> dict[str, Any]:
    per_chunk = max(1, MAX_CHUNK_SIZE // arr.dtype.itemsize)
    flat = arr.reshape(-1)
    chunks = [flat[i : i + per_chunk] for i in range(0, flat.size, per_chunk)]
    return {
        _CHUNKED: True,
        "shape": {str(i): int(n) for i, n in enumerate(arr.shape)},
        "chunks": {
            str(i): msgpack.ExtType(_Ext.NDARRAY, _array_payload(c)) for i, c in enumerate(chunks)
        },
    }


def _encode(x: Any, path: tuple) -> Any:
    """Converts a state dict into exact msgpack-native types, checking every leaf."""
    # NumPy scalars first: np.float64 and np.complex128 subclass float and complex, and
    # would lose their dtype through the Python branches below.
    if isinstance(x, (np.str_, np.bytes_)):
        return x.item()
    if isinstance(x, np.generic):
        _check_dtype(x.dtype, path)
        return msgpack.ExtType(_Ext.NPSCALAR, _array_payload(np.asarray(x)))
    if x is None or isinstance(x, (bool, str, bytes, float)):
        return x
    if isinstance(x, int):
        if not _INT_RANGE[0] <= x <= _INT_RANGE[1]:
            raise SerializationError(
                f"The integer at {_fmt_path(path)} does not fit in 64 bits; msgpack cannot "
                "store it. Store it as a string or a NumPy array of objects you split."
            )
        return x
    if isinstance(x, complex):
        return msgpack.ExtType(_Ext.NATIVE_COMPLEX, msgpack.packb((x.real, x.imag)))
    if isinstance(x, Mapping):
        encoded = {}
        for key, value in x.items():
            if not isinstance(key, (str, bytes)):
                raise TypeError(
                    f"Dict key {key!r} ({type(key).__name__}) at {_fmt_path(path)} is not a "
                    "string; msgpack state dicts need string keys. Convert the object "
                    "with to_state_dict (which uses str(key)) before serializing."
                )
            encoded[key] = _encode(value, (*path, key))
        return encoded
    if isinstance(x, (list, tuple)):
        return [_encode(v, (*path, i)) for i, v in enumerate(x)]
    if isinstance(x, (np.ndarray, jax.Array)):
        arr = np.asarray(x)
        _check_dtype(arr.dtype, path)
        if arr.size * arr.dtype.itemsize > MAX_CHUNK_SIZE:
            return _chunk(arr)
        return msgpack.ExtType(_Ext.NDARRAY, _array_payload(arr))
    raise TypeError(
        f"Cannot serialize {type(x).__module__}.{type(x).__qualname__} at {_fmt_path(path)}. "
        "msgpack state dicts hold dicts, lists, None, bool, int, float, complex, str, bytes, "
        "NumPy/JAX arrays and NumPy scalars. Call to_state_dict first, or register the "
        "type with register_serialization_state."
    )


def msgpack_serialize(pytree, in_place: bool = False) -> bytes:
    """Encodes a state dict (nested dicts/lists of arrays and scalars) as msgpack bytes.

    Args:
      pytree: the state dict; arrays may be NumPy or JAX (any numeric dtype, including
        bfloat16 and the float8 family).
      in_place: accepted for Flax compatibility; the input is never modified.

    Raises:
      TypeError: a leaf has a type msgpack cannot hold (the message names its path).

    Example:
      >>> import numpy as np
      >>> from plait.core import serialization
      >>> data = serialization.msgpack_serialize({'x': np.arange(3)})
      >>> serialization.msgpack_restore(data)
      {'x': array([0, 1, 2])}
    """
    del in_place  # _encode builds new containers and never writes to the input
    return msgpack.packb(_encode(pytree, ()), use_bin_type=True)


def _decode_error(what: str) -> MsgpackDecodeError:
    return MsgpackDecodeError(f"{what}. {_DECODE_HINT}")


def _array_from_payload(data: bytes) -> np.ndarray:
    try:
        fields = msgpack.unpackb(data, raw=True)
    except (ValueError, msgpack.UnpackException) as e:
        raise _decode_error(f"An array record could not be decoded ({e})") from e
    if not (isinstance(fields, list) and len(fields) == 3):
        raise _decode_error("An array record is not a (shape, dtype, bytes) triple")
    shape, dtype_name, buffer = fields
    if not (isinstance(shape, list) and all(type(n) is int and n >= 0 for n in shape)):
        raise _decode_error(f"An array record has an invalid shape {shape!r}")
    if not isinstance(dtype_name, bytes) or not isinstance(buffer, bytes):
        raise _decode_error("An array record has a dtype or data field of the wrong type")
    dtype = _DTYPES.get(dtype_name.decode("ascii", errors="replace"))
    if dtype is None:
        raise _decode_error(f"An array record has an unsupported dtype {dtype_name!r}")
    expected = math.prod(shape) * dtype.itemsize
    if len(buffer) != expected:
        raise _decode_error(
            f"An array record of shape {tuple(shape)} and dtype {dtype} needs {expected} "
            f"bytes of data but holds {len(buffer)}"
        )
    return np.frombuffer(buffer, dtype=dtype).reshape(shape)


def _ext_hook(code: int, data: bytes) -> Any:
    if code == _Ext.NDARRAY:
        return _array_from_payload(data)
    if code == _Ext.NPSCALAR:
        arr = _array_from_payload(data)
        if arr.shape != ():
            raise _decode_error(f"A NumPy scalar record holds an array of shape {arr.shape}")
        return arr[()]
    if code == _Ext.NATIVE_COMPLEX:
        try:
            parts = msgpack.unpackb(data)
        except (ValueError, msgpack.UnpackException) as e:
            raise _decode_error(f"A complex number record could not be decoded ({e})") from e
        if not (
            isinstance(parts, list)
            and len(parts) == 2
            and all(isinstance(p, (int, float)) and not isinstance(p, bool) for p in parts)
        ):
            raise _decode_error("A complex number record is not a (real, imag) pair")
        return complex(parts[0], parts[1])
    raise _decode_error(f"Unknown msgpack extension type {code}")


_DECODED_LEAVES: Final = (type(None), bool, int, float, complex, str, bytes, np.ndarray, np.generic)


def _unchunk(record: dict) -> np.ndarray:
    shape, chunks = record.get("shape"), record.get("chunks")
    if (
        set(record) != {_CHUNKED, "shape", "chunks"}
        or not isinstance(shape, dict)
        or not isinstance(chunks, dict)
    ):
        raise _decode_error("A chunked array record has the wrong fields")
    dims = [shape.get(str(i)) for i in range(len(shape))]
    parts = [chunks.get(str(i)) for i in range(len(chunks))]
    if not all(type(n) is int and n >= 0 for n in dims):
        raise _decode_error(f"A chunked array record has an invalid shape {shape!r}")
    if not parts or not all(isinstance(p, np.ndarray) and p.ndim == 1 for p in parts):
        raise _decode_error("A chunked array record has missing or non-flat chunks")
    if len({p.dtype for p in parts}) != 1:
        raise _decode_error("The chunks of a chunked array record have different dtypes")
    if sum(p.size for p in parts) != math.prod(dims):
        raise _decode_error(
            f"The chunks of a chunked array record do not add up to shape {tuple(dims)}"
        )
    return np.concatenate(parts).reshape(dims)


def _finish_decoded(tree: Any) -> Any:
    """Joins chunked arrays and rejects foreign leaves, without recursion.

    msgpack nests up to 1024 levels, deeper than Python's default recursion limit.
    """
    root = [tree]
    stack: list[tuple[Any, Any]] = [(root, 0)]
    while stack:
        container, key = stack.pop()
        value = container[key]
        if isinstance(value, dict):
            if _CHUNKED in value:
                container[key] = _unchunk(value)
            else:
                stack.extend((value, k) for k in value)
        elif isinstance(value, list):
            stack.extend((value, i) for i in range(len(value)))
        elif not isinstance(value, _DECODED_LEAVES):
            raise _decode_error(f"The payload holds a {type(value).__name__}")
    return root[0]


def msgpack_restore(encoded_pytree: bytes):
    """Decodes bytes written by ``msgpack_serialize`` into a state dict of NumPy arrays.

    Raises:
      MsgpackDecodeError: the bytes are malformed, truncated or not such a payload.
      TypeError: ``encoded_pytree`` is not bytes-like.

    Example:
      >>> from plait.core import serialization
      >>> serialization.msgpack_restore(serialization.msgpack_serialize({'a': 1.5}))
      {'a': 1.5}
    """
    if not isinstance(encoded_pytree, (bytes, bytearray, memoryview)):
        raise TypeError(
            f"msgpack_restore expects bytes, got {type(encoded_pytree).__name__}. Read the "
            "file in binary mode ('rb')."
        )
    try:
        tree = msgpack.unpackb(encoded_pytree, ext_hook=_ext_hook, raw=False)
    except MsgpackDecodeError:
        raise
    except (ValueError, TypeError, msgpack.UnpackException) as e:
        raise _decode_error(
            f"Could not decode {len(encoded_pytree)} bytes as msgpack ({type(e).__name__}: {e})"
        ) from e
    return _finish_decoded(tree)


def to_bytes(target) -> bytes:
    """Serializes ``target`` (any registered object) to msgpack bytes.

    Example:
      >>> import numpy as np
      >>> from plait.core import serialization
      >>> data = serialization.to_bytes({'w': np.ones(2)})
      >>> serialization.from_bytes({'w': np.zeros(2)}, data)
      {'w': array([1., 1.])}
    """
    return msgpack_serialize(to_state_dict(target), in_place=True)


def from_bytes(target, encoded_bytes: bytes):
    """Restores bytes from ``to_bytes`` into a copy of ``target`` (see ``from_state_dict``).

    Raises:
      MsgpackDecodeError: the bytes cannot be decoded.
      StateDictMismatchError: the decoded state does not fit ``target``.
    """
    return from_state_dict(target, msgpack_restore(encoded_bytes))
