"""Building an NNX module without running its initializers.

``ToLinen.apply`` and ``nnx_in_bridge_mdl`` need the module's structure (to pour stored
values into it) but not the values its constructor would compute. ``nnx.eval_shape`` gives
that structure with ``ShapeDtypeStruct`` placeholders; RNG streams are then given real
keys (they are not stored anywhere else), and every other placeholder must be filled by
the caller.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from plait import nnx
from plait.core import RngCount, RngKey, Variable


def is_placeholder(value: Any) -> bool:
    """Whether ``value`` is an ``eval_shape`` placeholder (no data)."""
    return isinstance(value, jax.ShapeDtypeStruct)


def build_abstract(
    factory: Callable[[Any], Any], rngs: Any, draw_key: Callable[[str], jax.Array]
) -> Any:
    """``factory(rngs)`` built abstractly, with concrete RNG keys from ``draw_key(tag)``.

    ``rngs`` is passed through ``nnx.eval_shape`` (so the caller's streams are not
    advanced by the construction); keys are drawn in path order, so they are
    deterministic for a given ``draw_key``.
    """
    module = nnx.eval_shape(factory, rngs)
    for _, node in sorted(_variables(module), key=lambda item: _sort_key(item[0])):
        value = node.get_raw_value()
        if not is_placeholder(value):
            continue
        if isinstance(node, RngKey):
            key = draw_key(node.get_metadata().get("tag", "default"))
            if value.shape:
                key = jax.random.split(key, value.shape)
            node.set_raw_value(key)
        elif isinstance(node, RngCount):
            node.set_raw_value(jnp.zeros(value.shape, dtype=value.dtype))
    return module


def placeholders(module: Any) -> list[tuple[tuple, Variable[Any]]]:
    """The Variables of ``module`` that still hold placeholders, with their paths."""
    return [(p, v) for p, v in _variables(module) if is_placeholder(v.get_raw_value())]


def _variables(module: Any) -> list[tuple[tuple, Variable[Any]]]:
    return [(tuple(p), v) for p, v in nnx.iter_graph(module) if isinstance(v, Variable)]


def _sort_key(path: tuple) -> tuple:
    return tuple((isinstance(k, str), str(k)) for k in path)
