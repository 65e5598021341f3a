"""Input pipeline: shuffle, batch, normalize, augment, and place batches on a device mesh.

The pipeline is plain numpy on the host (the data sets are small) and deterministic: the
order of epoch ``e`` depends only on ``(seed, e)``, which is what makes ``--resume`` give the
same result as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


@dataclasses.dataclass(frozen=True)
class Normalization:
    """Per-channel mean and standard deviation of the training images, in [0, 1] units."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, images: np.ndarray) -> Normalization:
        x = images.astype(np.float32) / 255.0
        axes = tuple(range(x.ndim - 1))
        return cls(x.mean(axis=axes), np.maximum(x.std(axis=axes), 1e-6))

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return ((images.astype(np.float32) / 255.0 - self.mean) / self.std).astype(np.float32)


def global_batch_size(per_device_batch_size: int, num_devices: int | None = None) -> int:
    return per_device_batch_size * (num_devices or jax.device_count())


def random_shift(images: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Translate each image by up to ``max_shift`` pixels (zero padding), a cheap augmentation."""
    if max_shift <= 0:
        return images
    n, h, w, _ = images.shape
    padded = np.pad(images, ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)))
    dy = rng.integers(0, 2 * max_shift + 1, size=n)
    dx = rng.integers(0, 2 * max_shift + 1, size=n)
    rows = dy[:, None] + np.arange(h)[None, :]
    cols = dx[:, None] + np.arange(w)[None, :]
    return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


def epoch_batches(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    *,
    seed: int,
    epoch: int,
    normalization: Normalization,
    shuffle: bool = True,
    drop_remainder: bool = True,
    augment_shift: int = 0,
) -> Iterator[dict[str, np.ndarray]]:
    """Yield ``{'image': float32 (B,H,W,C), 'label': int32 (B,)}`` batches for one epoch.

    Example:
        >>> import numpy as np
        >>> x = np.zeros((10, 4, 4, 1), np.uint8); y = np.arange(10, dtype=np.int32)
        >>> norm = Normalization(np.zeros(1, np.float32), np.ones(1, np.float32))
        >>> [b['label'].shape for b in epoch_batches(x, y, 4, seed=0, epoch=0, normalization=norm)]
        [(4,), (4,)]
    """
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels; they must match.")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}.")
    n = len(images)
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_remainder else n
    for start in range(0, stop, batch_size):
        idx = order[start : start + batch_size]
        x = images[idx]
        if augment_shift:
            x = random_shift(x, augment_shift, rng)
        yield {"image": normalization(x), "label": labels[idx]}


def num_batches(n: int, batch_size: int, drop_remainder: bool = True) -> int:
    return n // batch_size if drop_remainder else -(-n // batch_size)


def make_data_mesh(devices: list | None = None) -> Mesh:
    """A 1-D mesh with axis ``data`` over the given (default: all) devices."""
    devices = devices if devices is not None else jax.devices()
    return Mesh(np.asarray(devices), ("data",))


def shard_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Place a global host batch on the mesh, split along the leading (batch) axis.

    Every process iterates over the same global batch (the pipeline is deterministic), and
    each contributes only the rows that its own devices hold, so the same code runs with
    one process or many (``jax.make_array_from_process_local_data``).
    """
    sharding = NamedSharding(mesh, PartitionSpec("data"))
    size = mesh.shape["data"]
    processes, index = jax.process_count(), jax.process_index()

    def put(x: np.ndarray) -> jax.Array:
        if x.shape[0] % size:
            raise ValueError(
                f"batch of {x.shape[0]} does not split over {size} devices; use a batch size "
                f"that is a multiple of the device count (per_device_batch_size * {size})."
            )
        if processes > 1:
            # The data axis runs over devices in process order, so this process's devices
            # hold one contiguous block of rows.
            rows = x.shape[0] // processes
            x = x[index * rows : (index + 1) * rows]
        return jax.make_array_from_process_local_data(sharding, x)

    return {k: put(v) for k, v in batch.items()}
