"""Data sets for training and evaluating regularized neural ODEs (numpy only, no JAX).

Classification sets return :class:`ClassificationData`, time-series sets
:class:`TimeSeriesData`. Everything is generated or read locally; nothing is
downloaded. :func:`load_classification` and :func:`load_time_series` select a
data set by name, e.g. from a config file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .batching import iterate_batches, num_batches
from .containers import ClassificationData, TimeSeriesData
from .digits import load_digits
from .idx import read_idx, write_idx
from .irregular import make_irregular_series
from .mnist import load_mnist
from .mnist1d import make_mnist1d
from .physionet import PHYSIONET_PARAMETERS, load_physionet
from .spiral_sde import make_spiral_sde, MomentData
from .spirals import make_spirals

__all__ = [
    "CLASSIFICATION_DATASETS",
    "PHYSIONET_PARAMETERS",
    "TIME_SERIES_DATASETS",
    "ClassificationData",
    "TimeSeriesData",
    "iterate_batches",
    "load_classification",
    "load_digits",
    "load_mnist",
    "load_physionet",
    "load_time_series",
    "make_irregular_series",
    "make_mnist1d",
    "make_spiral_sde",
    "make_spirals",
    "MomentData",
    "num_batches",
    "read_idx",
    "write_idx",
]

# name -> (builder, whether it reads files from `path`, whether it takes a `seed`)
_CLASSIFICATION: dict[str, tuple[Callable[..., ClassificationData], bool, bool]] = {
    "digits": (load_digits, False, True),
    "mnist": (load_mnist, True, False),  # the files fix the split; nothing is random
    "mnist1d": (make_mnist1d, False, True),
}
_TIME_SERIES: dict[str, tuple[Callable[..., TimeSeriesData], bool, bool]] = {
    "spirals": (make_spirals, False, True),
    "irregular": (make_irregular_series, False, True),
    "physionet": (load_physionet, True, True),
}
CLASSIFICATION_DATASETS: tuple[str, ...] = tuple(_CLASSIFICATION)
TIME_SERIES_DATASETS: tuple[str, ...] = tuple(_TIME_SERIES)


def load_classification(
    name: str, *, path: str | os.PathLike[str] | None = None, seed: int = 0, **kwargs: Any
) -> ClassificationData:
    """Load the classification data set ``name`` (``digits``, ``mnist`` or ``mnist1d``).

    ``path`` is required for ``mnist`` (see :func:`load_mnist`) and rejected for the
    others; ``seed`` is ignored by ``mnist``, whose split is fixed by its files.
    Further keyword arguments go to the builder, e.g. ``test_fraction`` for digits.
    """
    return _dispatch("classification", _CLASSIFICATION, name, path, seed, kwargs)


def load_time_series(
    name: str, *, path: str | os.PathLike[str] | None = None, seed: int = 0, **kwargs: Any
) -> TimeSeriesData:
    """Load the time-series data set ``name`` (``spirals``, ``irregular`` or ``physionet``).

    ``path`` is required for ``physionet`` (see :func:`load_physionet`) and rejected
    for the generated sets. Further keyword arguments go to the builder, e.g.
    ``num_series`` for spirals or ``max_patients`` for physionet.
    """
    return _dispatch("time-series", _TIME_SERIES, name, path, seed, kwargs)


def _dispatch(
    kind: str,
    registry: dict[str, tuple[Callable[..., Any], bool, bool]],
    name: str,
    path: str | os.PathLike[str] | None,
    seed: int,
    kwargs: dict[str, Any],
) -> Any:
    key = name.lower() if isinstance(name, str) else None
    if key not in registry:
        raise ValueError(
            f"unknown {kind} data set {name!r}; accepted names: {', '.join(registry)}"
        )
    builder, needs_path, takes_seed = registry[key]
    if needs_path and path is None:
        raise ValueError(f"the {key} data set is read from disk: pass path=<its location>")
    if not needs_path and path is not None:
        raise ValueError(
            f"the {key} data set is generated locally and takes no path (got {path!r})"
        )
    if takes_seed:
        kwargs = {"seed": seed, **kwargs}
    return builder(path, **kwargs) if needs_path else builder(**kwargs)
