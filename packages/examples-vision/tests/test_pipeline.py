import jax
import numpy as np
import pytest

from plait.examples.vision import _pipeline


def make_data(n=50, h=6, w=6):
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (n, h, w, 1)).astype(np.uint8), np.arange(n, dtype=np.int32)


def test_normalization_zero_mean_unit_std():
    x, _ = make_data(200)
    norm = _pipeline.Normalization.fit(x)
    y = norm(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.mean(), 0.0, atol=1e-4)
    np.testing.assert_allclose(y.std(), 1.0, atol=1e-3)


def test_epoch_is_a_permutation_and_deterministic():
    x, y = make_data()
    norm = _pipeline.Normalization.fit(x)
    labels = [b["label"] for b in _pipeline.epoch_batches(x, y, 10, seed=3, epoch=1, normalization=norm)]
    seen = np.concatenate(labels)
    assert sorted(seen.tolist()) == list(range(50))
    again = np.concatenate([b["label"] for b in _pipeline.epoch_batches(
        x, y, 10, seed=3, epoch=1, normalization=norm)])
    np.testing.assert_array_equal(seen, again)
    other = np.concatenate([b["label"] for b in _pipeline.epoch_batches(
        x, y, 10, seed=3, epoch=2, normalization=norm)])
    assert not np.array_equal(seen, other)


def test_images_follow_their_labels_through_the_shuffle():
    x, y = make_data()
    norm = _pipeline.Normalization(np.zeros(1, np.float32), np.ones(1, np.float32))
    for batch in _pipeline.epoch_batches(x, y, 7, seed=0, epoch=0, normalization=norm):
        np.testing.assert_allclose(batch["image"], x[batch["label"]] / 255.0, rtol=1e-6)


def test_drop_remainder_and_keep_remainder():
    x, y = make_data(23)
    norm = _pipeline.Normalization.fit(x)
    dropped = list(_pipeline.epoch_batches(x, y, 5, seed=0, epoch=0, normalization=norm))
    kept = list(_pipeline.epoch_batches(x, y, 5, seed=0, epoch=0, normalization=norm,
                                        drop_remainder=False))
    assert [len(b["label"]) for b in dropped] == [5, 5, 5, 5]
    assert [len(b["label"]) for b in kept] == [5, 5, 5, 5, 3]
    assert _pipeline.num_batches(23, 5) == 4 and _pipeline.num_batches(23, 5, False) == 5


def test_random_shift_moves_content_without_changing_mass():
    img = np.zeros((1, 8, 8, 1), np.uint8)
    img[0, 3:5, 3:5, 0] = 200
    shifted = _pipeline.random_shift(np.repeat(img, 16, 0), 2, np.random.default_rng(0))
    assert shifted.shape == (16, 8, 8, 1)
    assert (shifted.sum(axis=(1, 2, 3)) == img.sum()).all()  # a 2px shift keeps the blob inside
    assert any(not np.array_equal(s, img[0]) for s in shifted)


def test_mismatched_lengths_raise():
    x, y = make_data(10)
    with pytest.raises(ValueError, match="10 images but 9 labels"):
        next(_pipeline.epoch_batches(x, y[:9], 2, seed=0, epoch=0,
                                     normalization=_pipeline.Normalization.fit(x)))


def test_shard_batch_splits_over_eight_devices():
    assert jax.device_count() == 8
    mesh = _pipeline.make_data_mesh()
    batch = {"image": np.ones((16, 4, 4, 1), np.float32), "label": np.arange(16, dtype=np.int32)}
    sharded = _pipeline.shard_batch(batch, mesh)
    assert sharded["label"].sharding.spec == jax.sharding.PartitionSpec("data")
    assert {s.data.shape for s in sharded["label"].addressable_shards} == {(2,)}
    np.testing.assert_array_equal(np.asarray(sharded["label"]), batch["label"])


def test_shard_batch_rejects_uneven_batch():
    mesh = _pipeline.make_data_mesh()
    with pytest.raises(ValueError, match="does not split over 8 devices"):
        _pipeline.shard_batch({"label": np.arange(12)}, mesh)
