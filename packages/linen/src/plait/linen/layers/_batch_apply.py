"""BatchApply: run a function on inputs whose leading axes are merged into one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._errors import LayerShapeError


def ndim_at_least(x: Any, num_dims: int) -> bool:
    """Whether ``x`` (anything array-like) has at least ``num_dims`` axes.

    Examples:
      >>> ndim_at_least(np.ones((2, 3)), 2), ndim_at_least(1.0, 1)
      (True, False)
    """
    return jnp.ndim(x) >= num_dims


def arbitrary_mergeable_leaf(min_num_dims: int, args: Any, kwargs: Any) -> Any:
    """The first leaf of ``args`` then ``kwargs`` with at least ``min_num_dims`` axes.

    Raises:
      LayerShapeError: when no leaf has enough axes.

    Examples:
      >>> arbitrary_mergeable_leaf(2, (1.0, np.ones((3, 4))), {}).shape
      (3, 4)
    """
    for leaf in jax.tree.leaves((args, kwargs)):
        if ndim_at_least(leaf, min_num_dims):
            return leaf
    shapes = [tuple(jnp.shape(leaf)) for leaf in jax.tree.leaves((args, kwargs))]
    raise LayerShapeError(
        f"BatchApply needs at least one argument with {min_num_dims} or more axes to "
        f"merge, but the argument leaves have shapes {shapes}. Pass a batched array, "
        "or lower num_dims."
    )


def merge_leading_dims(x: Any, num_dims: int) -> Any:
    """Merges the first ``num_dims`` axes of ``x`` into one (arrays with fewer axes
    pass through unchanged).

    Examples:
      >>> merge_leading_dims(np.ones((2, 3, 4)), 2).shape
      (6, 4)
    """
    if not ndim_at_least(x, num_dims):
        return x
    return jnp.reshape(x, (int(np.prod(x.shape[:num_dims])),) + tuple(x.shape[num_dims:]))


def split_leading_dim(x: Any, to_dim: tuple[int, ...]) -> Any:
    """Splits the first axis of ``x`` back into the shape ``to_dim``.

    Examples:
      >>> split_leading_dim(np.ones((6, 4)), (2, 3)).shape
      (2, 3, 4)
    """
    return jnp.reshape(x, tuple(to_dim) + tuple(x.shape[1:]))


class BatchApply:
    """Wraps ``f`` so that it sees the first ``num_dims`` axes of its inputs merged.

    Every argument leaf with at least ``num_dims`` axes has those axes flattened into
    one before ``f`` runs; every output leaf gets its first axis split back into the
    original leading shape. Useful for layers that expect one batch axis.

    Examples:
      >>> import jax.numpy as jnp
      >>> from plait import linen as nn
      >>> f = nn.BatchApply(lambda x: x.sum(-1, keepdims=True))
      >>> f(jnp.ones((2, 3, 4))).shape
      (2, 3, 1)
    """

    def __init__(self, f: Callable[..., Any], num_dims: int = 2):
        self._f = f
        self.num_dims = num_dims

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        example = arbitrary_mergeable_leaf(self.num_dims, args, kwargs)
        leading = tuple(jnp.shape(example)[: self.num_dims])
        merge = lambda x: merge_leading_dims(x, self.num_dims)
        outputs = self._f(*jax.tree.map(merge, args), **jax.tree.map(merge, kwargs))
        return jax.tree.map(lambda y: split_leading_dim(y, leading), outputs)
