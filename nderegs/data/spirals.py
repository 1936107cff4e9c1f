"""Noisy, irregularly sampled 2-D spirals, the toy set of the latent-ODE literature.

Follows the setup of Chen et al. (2018, "Neural Ordinary Differential
Equations", sec. 5.1) and Rubanova et al. (2019, "Latent ODEs for
Irregularly-Sampled Time Series"): half of the series wind clockwise, half
counter-clockwise, and each is observed at a random subset of a shared grid.
"""

from __future__ import annotations

import numpy as np

from ._checks import check_float, check_fraction, check_int, check_seed
from ._split import split_indices
from .containers import TimeSeriesData

# Total angle swept over the time window: two full turns.
_SWEEP = 4.0 * np.pi
# Archimedean spiral r = a + b * theta; ranges for the per-series a and b, chosen
# so radii stay within roughly [0.5, 3.5] (arbitrary length units).
_RADIUS_OFFSET = (0.5, 1.0)
_RADIUS_GROWTH = (0.1, 0.2)


def make_spirals(
    num_series: int = 1000,
    num_times: int = 100,
    num_observed: int = 30,
    noise_std: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> TimeSeriesData:
    """Generate a data set of partially observed 2-D Archimedean spirals.

    Each series is a point moving along ``r = a + b * phi`` with ``phi`` growing
    linearly from 0 to 4*pi over the window, rotated by a random start angle and
    traversed clockwise (exactly half of the series) or counter-clockwise:
    ``(x, y) = r * (cos(theta0 + s * phi), sin(theta0 + s * phi))`` with ``s = -1 / +1``,
    ``a ~ U(0.5, 1)``, ``b ~ U(0.1, 0.2)``, ``theta0 ~ U(0, 2*pi)``. Observations add
    i.i.d. Gaussian noise with standard deviation ``noise_std`` (same units as x, y).

    Every series is observed at ``num_observed`` distinct, randomly chosen points of
    the shared grid of ``num_times`` times (both channels at once); the mask marks
    them and unobserved values are 0. Times are evenly spaced on ``[0, 1]``.
    Channels are ``("x", "y")``. Deterministic given ``seed``.
    """
    num_series = check_int("num_series", num_series, minimum=2)
    num_times = check_int("num_times", num_times, minimum=2)
    num_observed = check_int("num_observed", num_observed, minimum=1)
    if num_observed > num_times:
        raise ValueError(f"num_observed ({num_observed}) cannot exceed num_times ({num_times})")
    noise_std = check_float("noise_std", noise_std, low=0.0)
    test_fraction = check_fraction("test_fraction", test_fraction)
    rng = np.random.default_rng(check_seed(seed))

    times = np.linspace(0.0, 1.0, num_times)
    clean = _spiral_trajectories(times, num_series, rng)
    noisy = clean + noise_std * rng.standard_normal(clean.shape)
    mask = _random_observation_mask(num_series, num_times, num_observed, rng)
    values = np.where(mask[..., None], noisy, 0.0)
    mask = np.broadcast_to(mask[..., None], values.shape)

    train, test = split_indices(num_series, test_fraction, rng)
    return TimeSeriesData(
        name="spirals",
        times=times.astype(np.float32),
        values_train=values[train].astype(np.float32),
        mask_train=mask[train].astype(np.float32),
        values_test=values[test].astype(np.float32),
        mask_test=mask[test].astype(np.float32),
        channel_names=("x", "y"),
    )


def _spiral_trajectories(
    times: np.ndarray, num_series: int, rng: np.random.Generator
) -> np.ndarray:
    """Noise-free spirals, shape ``(num_series, len(times), 2)``."""
    # Exactly half of the series turn each way (one extra counter-clockwise if odd).
    direction = rng.permutation(np.where(np.arange(num_series) % 2 == 0, 1.0, -1.0))
    start_angle = rng.uniform(0.0, 2.0 * np.pi, num_series)
    offset = rng.uniform(*_RADIUS_OFFSET, num_series)
    growth = rng.uniform(*_RADIUS_GROWTH, num_series)

    phi = _SWEEP * times[None, :]  # (1, T) angle swept so far
    radius = offset[:, None] + growth[:, None] * phi
    angle = start_angle[:, None] + direction[:, None] * phi
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=-1)


def _random_observation_mask(
    num_series: int, num_times: int, num_observed: int, rng: np.random.Generator
) -> np.ndarray:
    """Boolean ``(num_series, num_times)`` mask with exactly ``num_observed`` True per row."""
    # Ranking i.i.d. uniforms gives a uniformly random subset per row, vectorised.
    ranks = rng.random((num_series, num_times)).argsort(axis=1).argsort(axis=1)
    return ranks < num_observed
