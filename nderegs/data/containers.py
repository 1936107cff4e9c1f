"""Immutable containers that every loader in :mod:`nderegs.data` returns.

The containers validate their contents on construction, so a training loop
can rely on the documented shapes, dtypes and value ranges without checking.
"""

from __future__ import annotations

from dataclasses import dataclass
import math

import numpy as np


def _require(condition: bool, dataset: str, message: str) -> None:
    if not condition:
        raise ValueError(f"invalid data set {dataset!r}: {message}")


def _describe(array: np.ndarray) -> str:
    return f"shape {array.shape} and dtype {array.dtype}"


@dataclass(frozen=True)
class ClassificationData:
    """A labelled image/signal classification data set, split into train and test.

    Attributes:
        name: short identifier, e.g. ``"digits"``.
        x_train: float32 array of shape ``(N_train, D)``; each row is one example
            flattened in C order, with feature values scaled to ``[0, 1]``.
        y_train: int32 array of shape ``(N_train,)`` with labels in ``[0, num_classes)``.
        x_test: float32 array of shape ``(N_test, D)``, like ``x_train``.
        y_test: int32 array of shape ``(N_test,)``, like ``y_train``.
        num_classes: number of classes.
        image_shape: the unflattened shape of one example, e.g. ``(8, 8)`` for
            images or ``(40,)`` for 1-D signals; its product equals ``D``.
        source: where the examples and their split come from, in words (recorded in a
            run's ``summary.json``); empty if the loader does not say.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    image_shape: tuple[int, ...]
    source: str = ""

    def __post_init__(self) -> None:
        name = self.name
        _require(self.num_classes >= 2, name, f"num_classes must be >= 2, got {self.num_classes}")
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            _require(
                x.ndim == 2 and x.dtype == np.float32,
                name,
                f"x_{split} must be a 2-D float32 array, got {_describe(x)}",
            )
            _require(
                y.ndim == 1 and y.dtype == np.int32,
                name,
                f"y_{split} must be a 1-D int32 array, got {_describe(y)}",
            )
            _require(
                len(x) == len(y) and len(x) > 0,
                name,
                f"x_{split} and y_{split} must hold the same, non-zero number of examples, "
                f"got {len(x)} and {len(y)}",
            )
            _require(
                x.shape[1] == math.prod(self.image_shape),
                name,
                f"x_{split} has {x.shape[1]} features but image_shape {self.image_shape} "
                f"implies {math.prod(self.image_shape)}",
            )
            _require(
                bool(np.all((x >= 0.0) & (x <= 1.0))),
                name,
                f"x_{split} values must lie in [0, 1]",
            )
            _require(
                bool(np.all((y >= 0) & (y < self.num_classes))),
                name,
                f"y_{split} labels must lie in [0, {self.num_classes})",
            )

    @property
    def num_features(self) -> int:
        """Number of features ``D`` per (flattened) example."""
        return self.x_train.shape[1]


@dataclass(frozen=True)
class TimeSeriesData:
    """A multichannel, irregularly observed time-series data set on a shared time grid.

    Attributes:
        name: short identifier, e.g. ``"spirals"``.
        times: float32 array of shape ``(T,)``, strictly increasing, normalised to ``[0, 1]``.
        values_train: float32 array of shape ``(N_train, T, D)``; entry ``[n, t, d]`` is
            channel ``d`` of series ``n`` at ``times[t]``, and exactly 0 where unobserved.
        mask_train: float32 array of shape ``(N_train, T, D)`` with 1 where observed, else 0.
            Every series has at least one observation.
        values_test: float32 array of shape ``(N_test, T, D)``, like ``values_train``.
        mask_test: float32 array of shape ``(N_test, T, D)``, like ``mask_train``.
        channel_names: names of the ``D`` channels, in channel order.
    """

    name: str
    times: np.ndarray
    values_train: np.ndarray
    mask_train: np.ndarray
    values_test: np.ndarray
    mask_test: np.ndarray
    channel_names: tuple[str, ...]

    def __post_init__(self) -> None:
        name, times = self.name, self.times
        _require(
            times.ndim == 1 and times.dtype == np.float32 and len(times) > 0,
            name,
            f"times must be a non-empty 1-D float32 array, got {_describe(times)}",
        )
        _require(bool(np.all(np.diff(times) > 0)), name, "times must be strictly increasing")
        _require(bool(times[0] >= 0.0 and times[-1] <= 1.0), name, "times must lie in [0, 1]")
        expected_tail = (len(times), len(self.channel_names))
        for split in ("train", "test"):
            values, mask = getattr(self, f"values_{split}"), getattr(self, f"mask_{split}")
            for label, array in ((f"values_{split}", values), (f"mask_{split}", mask)):
                _require(
                    array.ndim == 3
                    and array.dtype == np.float32
                    and array.shape[1:] == expected_tail
                    and len(array) > 0,
                    name,
                    f"{label} must be a float32 array of shape (N, {expected_tail[0]}, "
                    f"{expected_tail[1]}) with N > 0, got {_describe(array)}",
                )
            _require(
                values.shape == mask.shape,
                name,
                f"values_{split} and mask_{split} shapes differ: {values.shape} vs {mask.shape}",
            )
            _require(
                bool(np.all((mask == 0.0) | (mask == 1.0))),
                name,
                f"mask_{split} must contain only 0 and 1",
            )
            _require(bool(np.all(np.isfinite(values))), name, f"values_{split} must be finite")
            _require(
                bool(np.all(values[mask == 0.0] == 0.0)),
                name,
                f"values_{split} must be 0 wherever mask_{split} is 0",
            )
            _require(
                bool(np.all(mask.sum(axis=(1, 2)) > 0)),
                name,
                f"every series in the {split} split needs at least one observation",
            )

    @property
    def num_channels(self) -> int:
        """Number of channels ``D``."""
        return len(self.channel_names)

    @property
    def num_times(self) -> int:
        """Length ``T`` of the shared time grid."""
        return len(self.times)


@dataclass(frozen=True)
class DensityData:
    """Unlabelled samples of a density, split into train and test.

    Attributes:
        name: short identifier, e.g. ``"moons"`` or ``"power"``.
        x_train: float32 array of shape ``(N_train, D)``, finite.
        x_test: float32 array of shape ``(N_test, D)``, finite.
        nll_offset: added to an NLL of the arrays (nats per sample) to give the NLL of
            the data in the units it is reported in: the log-determinant of the
            preprocessing (e.g. ``load_digits_density``'s standardization); 0 where the
            arrays are the data.
    """

    name: str
    x_train: np.ndarray
    x_test: np.ndarray
    nll_offset: float = 0.0

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x = getattr(self, f"x_{split}")
            _require(
                x.ndim == 2 and x.dtype == np.float32 and x.shape[0] >= 1 and x.shape[1] >= 1,
                self.name,
                f"x_{split} must be a non-empty 2-D float32 array, got {_describe(x)}",
            )
            _require(bool(np.all(np.isfinite(x))), self.name, f"x_{split} has non-finite values")
        _require(
            self.x_train.shape[1] == self.x_test.shape[1],
            self.name,
            f"train and test dimensions differ ({self.x_train.shape[1]} vs {self.x_test.shape[1]})",
        )

    @property
    def dim(self) -> int:
        return int(self.x_train.shape[1])
