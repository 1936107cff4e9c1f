"""scikit-learn's bundled 8x8 handwritten digits (no download needed)."""

from __future__ import annotations

import math

import numpy as np
import sklearn.datasets
from sklearn.model_selection import train_test_split

from ._checks import check_fraction, check_seed
from ._split import split_indices
from .containers import ClassificationData, DensityData

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
        source=(
            f"sklearn.datasets.load_digits(): {len(y)} 8x8 images; split stratified by "
            f"label with seed {seed}, test_fraction {test_fraction:g}"
        ),
    )


def load_digits_density(test_fraction: float = 0.2, seed: int = 0) -> DensityData:
    r"""The 8×8 digits as a 64-D density, dequantized and standardized.

    Each pixel count v ∈ {0, …, 16} becomes v + u with u ~ U(0, 1) (uniform
    dequantization, drawn once with `seed`), a value in [0, 17); then every
    dimension is standardized with the training set's mean m_d and standard deviation
    s_d: y_d = ((v_d + u_d) − m_d) / s_d, the space the flow models. The change of
    variables is accounted for in `DensityData.nll_offset` = Σ_d log s_d, so that the
    flow's NLL plus it is the NLL of the dequantized pixels v + u in nats (an upper
    bound of the discrete pixels' NLL, Theis et al. 2016); divided by 64 it is nats
    per dimension. The split is random (not by label) and deterministic given `seed`.
    """
    test_fraction = check_fraction("test_fraction", test_fraction)
    seed = check_seed(seed)
    pixels = sklearn.datasets.load_digits().data  # pyright: ignore[reportAttributeAccessIssue]
    rng = np.random.default_rng([seed, 64])
    train, test = split_indices(len(pixels), test_fraction, rng)
    dequantized = pixels + rng.uniform(size=pixels.shape)
    mean = dequantized[train].mean(0)
    std = dequantized[train].std(0)
    standardized = ((dequantized - mean) / std).astype(np.float32)
    return DensityData(
        name="digits64",
        x_train=standardized[train],
        x_test=standardized[test],
        nll_offset=float(np.sum(np.log(std))),
    )
