"""Constructor helpers shared by the layer modules (private)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from plait.core import Param, Rngs

from ._common import make_param


def keep_arguments(module: Any, arguments: Mapping[str, Any], names: str) -> None:
    """Stores the constructor arguments ``names`` on ``module``, each under its own name.

    ``names`` is space-separated, as for ``collections.namedtuple``, and its order is the
    order of the attributes. Layers keep their configuration as attributes named after
    the constructor's parameters (as Flax's do); passing ``locals()`` says that once per
    layer instead of one assignment per argument.
    """
    for name in names.split():
        setattr(module, name, arguments[name])


def new_param(
    init: Any, metadata: Mapping[str, Any], shape: tuple[int, ...], param_dtype: Any, rngs: Rngs
) -> Param:
    """A new ``Param`` of ``shape``, drawn with ``init`` from the ``params`` stream."""
    return make_param(init, rngs.params(), shape, param_dtype, metadata)


def optional_param(
    enabled: bool,
    init: Any,
    metadata: Mapping[str, Any],
    shape: tuple[int, ...],
    param_dtype: Any,
    rngs: Rngs,
) -> Param | None:
    """``new_param(...)``, or None when the layer was built without this parameter."""
    # A disabled parameter (no bias, no scale) is stored as None, so the attribute exists
    # either way and the layer's code can test for it.
    if not enabled:
        return None
    return new_param(init, metadata, shape, param_dtype, rngs)
