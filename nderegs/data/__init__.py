"""Data sets for training and evaluating regularized neural ODEs, as numpy arrays
(only the spiral SDE's sample paths are generated with diffrax, once, offline).

Classification sets return :class:`ClassificationData`, time-series sets
:class:`TimeSeriesData`, density sets :class:`DensityData`. Everything is generated or read locally; nothing is
downloaded. Configs select a data set by name through `nderegs.config.datasets`.
"""

from __future__ import annotations

from ._checks import MissingExtra
from .batching import iterate_batches, num_batches
from .containers import ClassificationData, DensityData, TimeSeriesData
from .digits import load_digits, load_digits_density
from .idx import read_idx, write_idx
from .irregular import make_irregular_series
from .maf import load_maf, MAF_DATASETS
from .mnist import load_mnist, load_mnist_subset, MNIST_SUBSET_TEST_PER_CLASS
from .mnist1d import make_mnist1d
from .physionet import load_physionet, PHYSIONET_PARAMETERS
from .spiral_sde import make_spiral_sde, MomentData
from .spirals import make_spirals
from .toy2d import make_toy_density, TOY_DENSITIES

__all__ = [
    "PHYSIONET_PARAMETERS",
    "ClassificationData",
    "DensityData",
    "MAF_DATASETS",
    "TOY_DENSITIES",
    "TimeSeriesData",
    "iterate_batches",
    "load_digits",
    "load_digits_density",
    "load_maf",
    "load_mnist",
    "MissingExtra",
    "load_mnist_subset",
    "MNIST_SUBSET_TEST_PER_CLASS",
    "load_physionet",
    "make_irregular_series",
    "make_mnist1d",
    "make_spiral_sde",
    "make_spirals",
    "make_toy_density",
    "MomentData",
    "num_batches",
    "read_idx",
    "write_idx",
]
