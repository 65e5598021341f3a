"""Small helpers for data-parallel training loops (``pmap`` style)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def shard(xs: Any) -> Any:
    """Splits the leading axis of every leaf into ``(local_device_count, -1)``.

    Examples:
        >>> import numpy as np, jax
        >>> from plait.linen.training import common_utils
        >>> n = jax.local_device_count()
        >>> common_utils.shard(np.zeros((2 * n, 3))).shape == (n, 2, 3)
        True
    """
    n = jax.local_device_count()
    return jax.tree_util.tree_map(lambda x: x.reshape((n, -1) + x.shape[1:]), xs)


def shard_prng_key(prng_key: Any) -> Any:
    """One key per local device (``jax.random.split(key, local_device_count)``)."""
    return jax.random.split(prng_key, num=jax.local_device_count())


def stack_forest(forest: Any) -> Any:
    """Stacks a sequence of same-structured pytrees leaf-wise with ``np.stack``.

    Examples:
        >>> from plait.linen.training import common_utils
        >>> common_utils.stack_forest([{'a': 1}, {'a': 2}])['a'].tolist()
        [1, 2]
    """
    return jax.tree_util.tree_map(lambda *leaves: np.stack(leaves), *forest)


def get_metrics(device_metrics: Any) -> Any:
    """Fetches per-step replicated metrics (first replica) to host and stacks them."""
    first = jax.tree_util.tree_map(lambda x: x[0], device_metrics)
    return stack_forest(jax.device_get(first))


def onehot(labels: Any, num_classes: int, on_value: float = 1.0, off_value: float = 0.0) -> Any:
    """Float32 one-hot encoding of integer ``labels`` (new last axis of size
    ``num_classes``).

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.linen.training import common_utils
        >>> common_utils.onehot(jnp.array([0, 2]), 3).tolist()
        [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    """
    labels = jnp.asarray(labels)
    hot = labels[..., None] == jnp.arange(num_classes).reshape((1,) * labels.ndim + (-1,))
    on = jnp.full(hot.shape, on_value, jnp.float32)
    off = jnp.full(hot.shape, off_value, jnp.float32)
    return jnp.where(hot, on, off)
