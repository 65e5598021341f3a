"""What a checkpoint entry or target leaf holds, for comparisons and messages."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Spec", "dtype_from_name", "is_key_dtype", "spec_of_value"]

_JSON_TYPES = (bool, int, float, str)


@dataclasses.dataclass(frozen=True)
class Spec:
    """Shape and dtype of an array entry, or the Python type of a plain value.

    Attributes:
      kind: ``"array"`` (numeric array), ``"key"`` (typed PRNG key array) or
        ``"value"`` (a JSON-representable Python ``bool``/``int``/``float``/``str``).
      shape: array shape (``None`` for values).
      dtype: dtype name such as ``"float32"`` or ``"key<fry>"``, or the Python type
        name for values.
    """

    kind: str
    shape: tuple[int, ...] | None
    dtype: str

    def describe(self) -> str:
        if self.kind == "value":
            return f"Python {self.dtype}"
        dims = ",".join(str(d) for d in (self.shape or ()))
        return f"{self.dtype}[{dims}]"


def is_key_dtype(dtype: Any) -> bool:
    return jnp.issubdtype(dtype, jax.dtypes.prng_key)


def dtype_from_name(name: str) -> np.dtype:
    """A NumPy dtype from its name, including the ml_dtypes ones (bfloat16, float8_*)."""
    return jnp.dtype(name)


def spec_of_value(value: Any) -> Spec | None:
    """The spec of an array-like or plain value, or ``None`` if it is neither."""
    if isinstance(value, bool | int | float | str) and not isinstance(value, np.generic):
        return Spec("value", None, type(value).__name__)
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if shape is None or dtype is None:
        return None
    kind = "key" if is_key_dtype(dtype) else "array"
    return Spec(
        kind, tuple(int(d) for d in shape), str(dtype if kind == "key" else np.dtype(dtype))
    )


def is_plain_value(value: Any) -> bool:
    return isinstance(value, _JSON_TYPES) and not isinstance(value, np.generic)
