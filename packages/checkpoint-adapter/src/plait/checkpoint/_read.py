"""Executing a restore plan: read the paired entries and build the output leaves."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from . import _direct, _orbax, _variables
from ._errors import CheckpointError
from ._paths import Path, show
from ._plan import Source, Target

__all__ = ["default_sharding", "execute", "place"]


def default_sharding() -> jax.sharding.Sharding:
    """Where arrays go when neither the target nor ``shardings=`` says: this process's first device."""
    return jax.sharding.SingleDeviceSharding(jax.local_devices()[0])


def place(array: np.ndarray, sharding: jax.sharding.Sharding) -> jax.Array:
    """A JAX array with ``sharding`` from a full host copy (works with several processes)."""
    return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])


def _key_data_sharding(sharding: jax.sharding.Sharding, path: Path) -> jax.sharding.Sharding:
    # Key data has one trailing axis more than the key array; it stays unsharded.
    if isinstance(sharding, jax.sharding.NamedSharding | jax.sharding.SingleDeviceSharding):
        return sharding
    if sharding.is_fully_replicated:
        return jax.sharding.NamedSharding(
            jax.sharding.Mesh(np.array(list(sharding.device_set)), ("replica",)),
            jax.sharding.PartitionSpec(),
        )
    raise CheckpointError(
        f"The PRNG key array at {show(path)} targets a {type(sharding).__name__}; key arrays are "
        "restored with NamedSharding or SingleDeviceSharding.\nFix: give that leaf a NamedSharding."
    )


def _request(target: Target, source: Source) -> Any:
    """An ArrayRequest for a device array, else Orbax RestoreArgs for a host value."""
    stored_meta = source.stored_spec
    host = source.transform is not None or source.origin == "orbax_scalar"
    if host or target.output in ("numpy", "npscalar", "python"):
        return _orbax.numpy_restore_args(stored_meta.dtype)
    sharding = target.sharding or default_sharding()
    if target.output == "key":
        sharding = _key_data_sharding(sharding, target.path)
        return _direct.ArrayRequest(tuple(stored_meta.shape), np.dtype("uint32"), sharding)
    return _direct.ArrayRequest(tuple(stored_meta.shape), np.dtype(stored_meta.dtype), sharding)


def _read(
    checkpointer: ocp.AbstractCheckpointer,
    state_dir: str,
    structure: Any,
    requests: dict[Path, Any],
) -> dict[Path, Any]:
    """Device arrays through tensorstore directly where the layout allows, the rest by Orbax."""
    driver = _direct.driver_for(state_dir)
    direct = {
        p: r for p, r in requests.items() if driver is not None and isinstance(r, _direct.ArrayRequest)
    }
    orbax_requests = {
        p: _orbax.array_restore_args(r.sharding, r.shape, r.dtype)
        if isinstance(r, _direct.ArrayRequest)
        else r
        for p, r in requests.items()
        if p not in direct
    }
    out = _orbax.read_leaves(checkpointer, state_dir, structure, orbax_requests)
    if direct:
        out.update(_direct.read_arrays(state_dir, driver, direct))
    return out


def _finish(target: Target, source: Source, raw: Any) -> Any:
    """The output value of one target leaf from what was read (or the JSON value)."""
    if source.origin == "value":
        value = source.value
        if target.output == "python":
            return target.python_type(value)
        array = np.asarray(value, dtype=np.dtype(target.spec.dtype))
        if target.output == "numpy":
            return array
        if target.output == "npscalar":
            return target.python_type(array)
        return place(array, target.sharding or default_sharding())
    if source.transform is not None:
        raw = np.asarray(source.transform(np.asarray(raw)))
    if source.origin == "orbax_scalar" and target.output != "python":
        raw = np.asarray(raw).astype(np.dtype(target.spec.dtype))
    if target.output == "python":
        return target.python_type(np.asarray(raw).item())
    if target.output == "numpy":
        return np.asarray(raw)
    if target.output == "npscalar":
        return target.python_type(np.asarray(raw))
    if target.output == "key":
        return jax.random.wrap_key_data(raw, impl=source.impl)
    if isinstance(raw, np.ndarray):
        return place(raw, target.sharding or default_sharding())
    return raw


def execute(
    checkpointer: ocp.AbstractCheckpointer,
    state_dir: str | None,
    structure: Any,
    pairs: Sequence[tuple[Target, Source]],
) -> dict[Path, Any]:
    """Reads every paired entry; returns ``{target path: output leaf}`` (Variables rebuilt)."""
    requests = {
        source.stored: _request(target, source)
        for target, source in pairs
        if source.origin != "value"
    }
    raw = _read(checkpointer, state_dir, structure, requests) if requests else {}
    out = {}
    for target, source in pairs:
        value = _finish(target, source, raw.get(source.stored))
        if _variables.is_variable(target.leaf):
            value = _variables.with_value(target.leaf, value)
        out[target.path] = value
    return out
