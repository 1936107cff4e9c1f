"""Data-set variants: each reads or generates its data (nothing is downloaded).
Adding a data set is one class here, listed in the union of the tasks that take it."""

from __future__ import annotations

import abc
from typing import Literal, Optional, TYPE_CHECKING

from pydantic import Field

from ..data import (
    ClassificationData,
    load_digits,
    load_mnist,
    load_physionet,
    make_irregular_series,
    make_mnist1d,
    make_spiral_sde,
    make_spirals,
    MomentData,
    TimeSeriesData,
)
from .base import choice, Float, Int, Str, Variant


class AbstractDataConfig(Variant, abc.ABC):
    name: str
    #: Use only the first N training examples (None -> all).
    subset: Optional[Int] = Field(default=None, gt=0)


class AbstractClassificationData(AbstractDataConfig, abc.ABC):
    @abc.abstractmethod
    def load(self, seed: int) -> ClassificationData: ...


class Digits(AbstractClassificationData):
    """scikit-learn's bundled 8x8 digits, split by label (stratified) with the seed."""

    name: Literal["digits"] = "digits"
    #: Fraction of the examples held out for evaluation.
    test_fraction: Float = Field(default=0.2, gt=0, lt=1)

    def load(self, seed: int) -> ClassificationData:
        return load_digits(test_fraction=self.test_fraction, seed=seed)


class MNIST(AbstractClassificationData):
    """MNIST from IDX files (gzipped or not) or a Keras-style .npz at `path`; the
    files fix the split."""

    name: Literal["mnist"] = "mnist"
    path: Str = Field(
        description="where the MNIST files are; pass it e.g. as task.data.path=/path/to/mnist"
    )

    def load(self, seed: int) -> ClassificationData:
        return load_mnist(self.path)


class MNIST1D(AbstractClassificationData):
    """MNIST-1D, generated offline (package `mnist1d`)."""

    name: Literal["mnist1d"] = "mnist1d"
    #: Number of examples to generate (None -> the generator's default).
    num_samples: Optional[Int] = Field(default=None, gt=0)

    def load(self, seed: int) -> ClassificationData:
        if self.num_samples is None:
            return make_mnist1d(seed=seed)
        return make_mnist1d(num_samples=self.num_samples, seed=seed)


class AbstractTimeSeriesData(AbstractDataConfig, abc.ABC):
    #: Fraction of the series held out for evaluation.
    test_fraction: Float = Field(default=0.2, gt=0, lt=1)

    @abc.abstractmethod
    def load(self, seed: int) -> TimeSeriesData: ...


class Spirals(AbstractTimeSeriesData):
    """Partially observed 2-D spirals, generated."""

    name: Literal["spirals"] = "spirals"
    #: Number of series to generate (None -> the generator's default).
    num_samples: Optional[Int] = Field(default=None, gt=0)

    def load(self, seed: int) -> TimeSeriesData:
        if self.num_samples is None:
            return make_spirals(test_fraction=self.test_fraction, seed=seed)
        return make_spirals(self.num_samples, test_fraction=self.test_fraction, seed=seed)


class Irregular(AbstractTimeSeriesData):
    """Irregularly sampled multichannel series with masks (the PhysioNet stand-in)."""

    name: Literal["irregular"] = "irregular"
    #: Number of series to generate (None -> the generator's default).
    num_samples: Optional[Int] = Field(default=None, gt=0)

    def load(self, seed: int) -> TimeSeriesData:
        if self.num_samples is None:
            return make_irregular_series(test_fraction=self.test_fraction, seed=seed)
        return make_irregular_series(self.num_samples, test_fraction=self.test_fraction, seed=seed)


class PhysioNet(AbstractTimeSeriesData):
    """PhysioNet 2012 (set-a) patient records from `path`."""

    name: Literal["physionet"] = "physionet"
    path: Str = Field(
        description="the folder of PhysioNet 2012 patient files (e.g. set-a/); pass it "
        "e.g. as task.data.path=/path/to/physionet/set-a"
    )

    def load(self, seed: int) -> TimeSeriesData:
        return load_physionet(self.path, test_fraction=self.test_fraction, seed=seed)


class SpiralSDEData(Variant):
    """Moments of paper 1's spiral SDE, from generated paths."""

    name: Literal["spiral_sde"] = "spiral_sde"
    #: Number of true paths the moments are computed from.
    num_samples: Int = Field(default=10_000, gt=1)

    def load(self, seed: int) -> MomentData:
        return make_spiral_sde(num_trajectories=self.num_samples, seed=seed)


if TYPE_CHECKING:
    ClassificationDataConfig = AbstractClassificationData
    TimeSeriesDataConfig = AbstractTimeSeriesData
    SpiralSDEDataConfig = SpiralSDEData
else:
    ClassificationDataConfig = choice(Digits, MNIST, MNIST1D, default="digits")
    TimeSeriesDataConfig = choice(Spirals, Irregular, PhysioNet, default="irregular")
    SpiralSDEDataConfig = choice(SpiralSDEData, default="spiral_sde")
