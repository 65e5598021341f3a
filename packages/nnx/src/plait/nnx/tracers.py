"""Trace bookkeeping (``nnx.tracers``): which JAX trace an Object belongs to."""

from __future__ import annotations

from typing import Any


def current_jax_trace() -> Any:
    """An opaque token of the JAX trace running now (equal tokens: same trace).

    Objects record it when created; mutating an Object from another trace is an error.
    """
    from plait.core import _compat

    return _compat.current_trace_state()
