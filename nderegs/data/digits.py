"""scikit-learn's bundled 8x8 handwritten digits (no download needed)."""

from __future__ import annotations

import math

import numpy as np
import sklearn.datasets
from sklearn.model_selection import train_test_split

from ._checks import check_fraction, check_seed
from .containers import ClassificationData

# Pixels in the bundled data are counts of "on" cells in 4x4 blocks, i.e. 0..16.
_MAX_PIXEL = 16.0
_NUM_CLASSES = 10


def load_digits(test_fraction: float = 0.2, seed: int = 0) -> ClassificationData:
    """Load the 1797 8x8 digit images (UCI optical digits) shipped with scikit-learn.

    Returns ``ClassificationData`` named ``"digits"`` with 64 float32 features in
    ``[0, 1]`` (pixel value / 16), int32 labels 0-9, ``image_shape == (8, 8)``.
    The train/test split is stratified by label and deterministic given ``seed``.
    """
    test_fraction = check_fraction("test_fraction", test_fraction)
    seed = check_seed(seed)
    bunch = sklearn.datasets.load_digits()
    x = (bunch.data / _MAX_PIXEL).astype(np.float32)  # pyright: ignore[reportAttributeAccessIssue]
    y = bunch.target.astype(np.int32)  # pyright: ignore[reportAttributeAccessIssue]
    # Stratification needs every class in both splits (sklearn rounds the test size up).
    num_test = math.ceil(test_fraction * len(y))
    if min(num_test, len(y) - num_test) < _NUM_CLASSES:
        raise ValueError(
            f"test_fraction={test_fraction} gives a {num_test}/{len(y) - num_test} test/train "
            f"split of {len(y)} digits; a stratified split needs at least {_NUM_CLASSES} "
            "examples on each side"
        )
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, stratify=y, random_state=seed
    )
    return ClassificationData(
        name="digits",
        x_train=np.asarray(x_train),
        y_train=np.asarray(y_train),
        x_test=np.asarray(x_test),
        y_test=np.asarray(y_test),
        num_classes=_NUM_CLASSES,
        image_shape=(8, 8),
    )
