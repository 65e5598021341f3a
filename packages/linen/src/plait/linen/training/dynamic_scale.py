"""Dynamic loss scaling for low-precision (float16) training."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from plait.core import struct


class DynamicScaleResult(NamedTuple):
    """What a dynamic-scale gradient function returns."""

    dynamic_scale: DynamicScale
    finite: Any
    aux: Any
    grad: Any


class DynamicScale(struct.PyTreeNode):
    """Scales the loss so that float16 gradients neither underflow nor overflow.

    The loss is multiplied by ``scale`` before differentiation and the gradients divided by
    it. When a gradient is not finite the scale shrinks by ``backoff_factor`` (the caller
    should skip that update); after ``growth_interval`` finite steps it grows by
    ``growth_factor``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.linen.training.dynamic_scale import DynamicScale
        >>> ds = DynamicScale()
        >>> grad_fn = ds.value_and_grad(lambda w: jnp.sum(w ** 2))
        >>> ds, finite, loss, grad = grad_fn(jnp.array([1.0, 2.0]))
        >>> bool(finite), float(loss), grad.tolist()
        (True, 5.0, [2.0, 4.0])
    """

    growth_factor: float = struct.field(pytree_node=False, default=2.0)
    backoff_factor: float = struct.field(pytree_node=False, default=0.5)
    growth_interval: int = struct.field(pytree_node=False, default=2000)
    fin_steps: int = 0
    scale: float = 65536.0
    minimum_scale: float | None = struct.field(
        pytree_node=False, default=float(jnp.finfo(jnp.float32).tiny)
    )

    def value_and_grad(
        self,
        fun: Callable[..., Any],
        argnums: int | Sequence[int] = 0,
        has_aux: bool = False,
        axis_name: str | None = None,
    ) -> Callable[..., DynamicScaleResult]:
        """Like ``jax.value_and_grad`` but returns
        ``DynamicScaleResult(new_dynamic_scale, finite, value_or_(value, aux), grad)``.

        Args:
            fun: the loss function.
            argnums: the arguments to differentiate.
            has_aux: ``fun`` returns ``(loss, aux)``.
            axis_name: if set, gradients are averaged over this ``pmap``/``shard_map`` axis.
        """

        @functools.wraps(fun)
        def scaled_loss(*args: Any) -> Any:
            out = fun(*args)
            if has_aux:
                return self.scale * out[0], out[1]
            return self.scale * out

        scaled_value_and_grad = jax.value_and_grad(scaled_loss, argnums, has_aux)

        def grad_fn(*args: Any) -> DynamicScaleResult:
            value, grad = scaled_value_and_grad(*args)
            value = (value[0] / self.scale, value[1]) if has_aux else value / self.scale
            grad = jax.tree_util.tree_map(lambda g: g / self.scale, grad)
            if axis_name is not None:
                grad = lax.pmean(grad, axis_name)
            finite = jnp.array(True)
            for g in jax.tree_util.tree_leaves(grad):
                finite &= jnp.all(lax.is_finite(g))
            grow = self.fin_steps == self.growth_interval
            max_scale = jnp.finfo(jnp.float32).max
            grown = jnp.minimum(self.scale * self.growth_factor, max_scale)
            on_finite = jnp.where(grow, grown, self.scale)
            on_overflow = self.scale * self.backoff_factor
            if self.minimum_scale is not None:
                on_overflow = jnp.maximum(on_overflow, self.minimum_scale)
            new_scale = jnp.where(finite, on_finite, on_overflow)
            new_fin_steps = jnp.where(grow | ~finite, 0, self.fin_steps + 1)
            new_self = self.replace(fin_steps=new_fin_steps, scale=new_scale)
            return DynamicScaleResult(new_self, finite, value, grad)

        return grad_fn
