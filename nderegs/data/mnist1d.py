"""MNIST-1D (Greydanus 2020): 40-sample 1-D signals of the ten digits, generated locally."""

from __future__ import annotations

from collections.abc import Iterator
import contextlib
import random

import numpy as np

from ._checks import check_int, check_seed, MissingExtra
from .containers import ClassificationData

_NUM_CLASSES = 10


def make_mnist1d(num_samples: int = 5000, seed: int = 42) -> ClassificationData:
    """Generate MNIST-1D offline with the ``mnist1d`` package's own procedure.

    Uses ``mnist1d.data.make_dataset`` with the package's default arguments
    except ``num_samples`` and ``seed`` (never the download path). The package
    makes ``num_samples // 10`` examples per class and splits them 80/20 into
    train/test. Each example is a 40-long float signal; it is rescaled to
    ``[0, 1]`` with the training set's global min and max (test values outside
    that range are clipped). Labels are int32 0-9, ``image_shape == (40,)``.

    The defaults (5000 samples, seed 42) reproduce the package's reference data set.
    """
    num_samples = check_int("num_samples", num_samples, minimum=10)
    seed = check_seed(seed)
    try:
        import mnist1d.data  # optional dependency, only needed here
    except ImportError as error:
        raise MissingExtra(
            "make_mnist1d needs the optional 'mnist1d' package; install it with "
            "`pip install mnist1d`"
        ) from error

    args = mnist1d.data.get_dataset_args()
    args.num_samples = num_samples  # pyright: ignore[reportAttributeAccessIssue]
    args.seed = seed  # pyright: ignore[reportAttributeAccessIssue]
    with _preserved_global_rng():
        dataset = mnist1d.data.make_dataset(args)

    x_train = np.asarray(dataset["x"], dtype=np.float64)
    x_test = np.asarray(dataset["x_test"], dtype=np.float64)
    low, high = x_train.min(), x_train.max()
    scale = high - low if high > low else 1.0
    return ClassificationData(
        name="mnist1d",
        x_train=((x_train - low) / scale).astype(np.float32),
        y_train=np.asarray(dataset["y"], dtype=np.int32),
        x_test=np.clip((x_test - low) / scale, 0.0, 1.0).astype(np.float32),
        y_test=np.asarray(dataset["y_test"], dtype=np.int32),
        num_classes=_NUM_CLASSES,
        image_shape=(x_train.shape[1],),
    )


@contextlib.contextmanager
def _preserved_global_rng() -> Iterator[None]:
    """mnist1d seeds and draws from the global ``random``/``np.random`` state; undo that."""
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
