"""``functional``: an NNX module class used through pure ``init`` / ``apply`` functions."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from plait import nnx

from ._errors import FUNCTIONAL_NOT_INITIALIZED, BridgeError


@dataclasses.dataclass
class Functional[M: nnx.Module]:
    """An NNX module class with its constructor arguments, used functionally.

    ``init(rngs=...)`` constructs the module and returns its State (recording the graph
    definition); ``apply(*states)`` rebuilds it and returns a call proxy:
    ``f.apply(state)(x)`` gives ``(output, (graphdef, new_state))``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait import bridge, nnx
        >>> f = bridge.functional(nnx.Linear)(3, 2)
        >>> state = f.init(rngs=nnx.Rngs(0))
        >>> y, (graphdef, new_state) = f.apply(state)(jnp.ones((1, 3)))
        >>> y.shape
        (1, 2)
    """

    module_type: type[M]
    graphdef: nnx.GraphDef | None
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def init(self, *, rngs: nnx.Rngs | None = None) -> nnx.State:
        """Constructs the module (passing ``rngs`` if given) and returns its State."""
        kwargs = dict(self.kwargs)
        if rngs is not None:
            kwargs["rngs"] = rngs
        module = self.module_type(*self.args, **kwargs)
        self.graphdef, state = nnx.split(module)
        return state

    def apply(self, *states: Any) -> Any:
        """A call proxy over the module rebuilt from ``states`` (see ``nnx.call``)."""
        if self.graphdef is None:
            raise BridgeError(FUNCTIONAL_NOT_INITIALIZED.format(cls=self.module_type.__name__))
        return self.graphdef.apply(*states)


def functional[M: nnx.Module](cls: type[M]) -> Callable[..., Functional[M]]:
    """``functional(cls)(*args, **kwargs)`` is ``Functional(cls, None, args, kwargs)``."""

    def make(*args: Any, **kwargs: Any) -> Functional[M]:
        return Functional(cls, None, args, kwargs)

    return make
