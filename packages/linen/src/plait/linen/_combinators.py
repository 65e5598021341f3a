"""Combinators: modules built from other modules and callables."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ._errors import LinenError
from ._module import Module, compact


class Sequential(Module):
    """Calls ``layers`` in order, feeding each output to the next layer.

    A tuple output is splatted as positional arguments of the next layer and a dict output
    as keyword arguments. Layers may be modules or plain functions. Modules passed from
    outside any module are owned by the Sequential and named ``layers_0``, ``layers_1``...

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from plait import linen as nn
        >>> class Scale(nn.Module):
        ...   @nn.compact
        ...   def __call__(self, x):
        ...     return x * self.param('s', jax.nn.initializers.ones, ())
        >>> model = nn.Sequential([Scale(), lambda x: x + 1, Scale()])
        >>> variables = model.init(jax.random.key(0), 1.0)
        >>> sorted(variables['params'])
        ['layers_0', 'layers_2']
        >>> float(model.apply(variables, 1.0))
        2.0
    """

    layers: Sequence[Callable[..., Any]]

    def __post_init__(self) -> None:
        if not isinstance(self.layers, Sequence) or isinstance(self.layers, str):
            raise LinenError(
                f"Sequential(layers=...) must be a sequence of callables, but got "
                f"{type(self.layers).__name__}.\nFix: pass a list, e.g. "
                "nn.Sequential([nn.Dense(4), nn.relu])."
            )
        super().__post_init__()

    @compact
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not self.layers:
            raise LinenError(
                f"Sequential module {self.name or ''} has no layers.\nFix: pass at least one layer."
            )
        outputs = self.layers[0](*args, **kwargs)
        for layer in self.layers[1:]:
            if isinstance(outputs, tuple):
                outputs = layer(*outputs)
            elif isinstance(outputs, Mapping):
                outputs = layer(**outputs)
            else:
                outputs = layer(outputs)
        return outputs
