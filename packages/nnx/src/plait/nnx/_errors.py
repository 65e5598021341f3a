"""Exception classes of plait.nnx and the helpers layers use to build clear messages.

Every message says what went wrong, where (the module path inside the model being
called), expected versus actual, and how to fix it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from ._callpath import module_path


class ShapeMismatchError(ValueError):
    """An input or state array has a shape a Module cannot accept."""


class AttributeNotFoundError(ValueError):
    """``set_attributes`` / ``view`` / ``with_attributes`` found no module to set a name on."""


class OptimizerUpdateError(ValueError):
    """``Optimizer.update`` got gradients that do not match the optimized state."""


class MetricUpdateError(TypeError):
    """A metric's ``update`` was called without the values it needs."""


SHAPE_TEMPLATE: Final = (
    "{where} received `{argument}` with shape {actual}, but expected {expected}.\n"
    "Fix: {fix}"
)


def _shape_text(shape: Any) -> str:
    if isinstance(shape, str):
        return shape
    return str(tuple(shape))


def shape_error(
    module: Any, *, argument: str, expected: Any, actual: Any, fix: str
) -> ShapeMismatchError:
    """Builds (does not raise) the error for an input of the wrong shape.

    Args:
      module: the Module that rejects the input; its path inside the model being called
        is looked up and put in the message.
      argument: which input, e.g. ``"inputs"`` or ``"carry[0]"``.
      expected: the expected shape, as a tuple or a readable string like ``"(..., 3)"``.
      actual: the shape that was passed.
      fix: one sentence telling the user what to change.

    Example:
      >>> from plait import nnx
      >>> class Scale(nnx.Module):
      ...   def __call__(self, x):
      ...     if x.shape[-1] != 2:
      ...       raise shape_error(self, argument="x", expected="(..., 2)",
      ...                         actual=x.shape, fix="pass 2 features")
      ...     return x
      >>> import jax.numpy as jnp
      >>> Scale()(jnp.ones((3,)))
      Traceback (most recent call last):
      ...
      plait.nnx._errors.ShapeMismatchError: Scale received `x` with shape (3,), but expected (..., 2).
      Fix: pass 2 features
    """
    return ShapeMismatchError(
        SHAPE_TEMPLATE.format(
            where=module_path(module),
            argument=argument,
            actual=_shape_text(actual),
            expected=_shape_text(expected),
            fix=fix,
        )
    )


def check_feature_axis(
    module: Any,
    x: Any,
    *,
    axis: int | Sequence[int] = -1,
    size: int | Sequence[int],
    param: str,
    argument: str = "inputs",
) -> None:
    """Raises :class:`ShapeMismatchError` unless ``x.shape[axis] == size``.

    ``axis`` and ``size`` may be sequences (several feature axes, e.g. LinearGeneral).
    ``param`` names the constructor argument that fixed ``size`` (``"in_features"``).
    """
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    sizes = (size,) if isinstance(size, int) else tuple(size)
    shape = tuple(getattr(x, "shape", ()))
    ndim = len(shape)
    ok = all(-ndim <= a < ndim for a in axes) and all(
        shape[a] == s for a, s in zip(axes, sizes, strict=True)
    )
    if ok:
        return
    wanted = ["..."] * max(ndim, max((a + 1 if a >= 0 else -a) for a in axes))
    for a, s in zip(axes, sizes, strict=True):
        wanted[a] = str(s)
    expected = "(" + ", ".join(wanted) + ")"
    where = "axis" if len(axes) == 1 else "axes"
    axes_text = str(axes[0]) if len(axes) == 1 else str(axes)
    got = (
        [shape[a] if -ndim <= a < ndim else "missing" for a in axes] if ndim else "a scalar"
    )
    raise shape_error(
        module,
        argument=argument,
        expected=expected,
        actual=shape,
        fix=(
            f"{where} {axes_text} must have size {size if len(sizes) > 1 else sizes[0]} "
            f"(the module's {param}), got {got}. Reshape the input, or construct the "
            f"module with {param} matching the input."
        ),
    )
