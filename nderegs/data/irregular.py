"""Synthetic sparse multichannel series: an offline stand-in for PhysioNet-style data."""

from __future__ import annotations

import numpy as np

from ._checks import check_float, check_fraction, check_int, check_seed
from ._scaling import masked_channel_stats, standardize
from ._split import split_indices
from .containers import TimeSeriesData

# Latent damped oscillations per series, mixed nonlinearly into the channels.
_NUM_COMPONENTS = 3
_AMPLITUDE = (0.5, 1.5)
_DECAY_RATE = (0.0, 3.0)  # per unit time; the window is [0, 1]
_FREQUENCY = (0.5, 3.0)  # cycles over the window
_CHANNEL_OFFSET_STD = 0.3


def make_irregular_series(
    num_series: int = 500,
    num_times: int = 48,
    num_channels: int = 4,
    observe_prob: float = 0.3,
    noise_std: float = 0.02,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> TimeSeriesData:
    """Generate smooth nonlinear multichannel series with sparse, independent observations.

    Each series has three latent damped oscillations
    ``z_k(t) = A_k exp(-lambda_k t) cos(2 pi f_k t + phi_k)`` with random amplitude,
    decay rate, frequency and phase. Its channels are ``tanh(W z(t)) + c``, where
    the mixing matrix ``W`` (``num_channels x 3``) is shared by the whole data set
    (so channels are correlated the same way in every series, as physiological
    variables are) and the offsets ``c`` vary per series. Gaussian noise with
    standard deviation ``noise_std`` is added (in the units of the tanh output).

    The grid has ``num_times`` evenly spaced times on ``[0, 1]``. Each
    (time, channel) entry is observed independently with probability
    ``observe_prob``; a series that ends up with no observation gets one at a
    random entry. Values are standardised per channel with the mean and std of
    the observed training values; unobserved entries are 0. Channels are named
    ``"ch0", "ch1", ...``. Deterministic given ``seed``.
    """
    num_series = check_int("num_series", num_series, minimum=2)
    num_times = check_int("num_times", num_times, minimum=2)
    num_channels = check_int("num_channels", num_channels, minimum=1)
    observe_prob = check_float("observe_prob", observe_prob, low=0.0, high=1.0, low_inclusive=False)
    noise_std = check_float("noise_std", noise_std, low=0.0)
    test_fraction = check_fraction("test_fraction", test_fraction)
    rng = np.random.default_rng(check_seed(seed))

    times = np.linspace(0.0, 1.0, num_times)
    clean = _mixed_oscillations(times, num_series, num_channels, rng)
    noisy = clean + noise_std * rng.standard_normal(clean.shape)
    mask = _observation_mask(clean.shape, observe_prob, rng)

    train, test = split_indices(num_series, test_fraction, rng)
    mean, std = masked_channel_stats(noisy[train], mask[train])
    return TimeSeriesData(
        name="irregular",
        times=times.astype(np.float32),
        values_train=standardize(noisy[train], mask[train], mean, std),
        mask_train=mask[train].astype(np.float32),
        values_test=standardize(noisy[test], mask[test], mean, std),
        mask_test=mask[test].astype(np.float32),
        channel_names=tuple(f"ch{c}" for c in range(num_channels)),
    )


def _mixed_oscillations(
    times: np.ndarray, num_series: int, num_channels: int, rng: np.random.Generator
) -> np.ndarray:
    """Noise-free series, shape ``(num_series, len(times), num_channels)``."""
    mixing = rng.standard_normal((num_channels, _NUM_COMPONENTS)) / np.sqrt(_NUM_COMPONENTS)
    shape = (num_series, 1, _NUM_COMPONENTS)  # broadcast against times (1, T, 1)
    amplitude = rng.uniform(*_AMPLITUDE, shape)
    decay = rng.uniform(*_DECAY_RATE, shape)
    frequency = rng.uniform(*_FREQUENCY, shape)
    phase = rng.uniform(0.0, 2.0 * np.pi, shape)
    offset = _CHANNEL_OFFSET_STD * rng.standard_normal((num_series, 1, num_channels))

    t = times[None, :, None]
    latent = amplitude * np.exp(-decay * t) * np.cos(2.0 * np.pi * frequency * t + phase)
    return np.tanh(latent @ mixing.T) + offset


def _observation_mask(
    shape: tuple[int, int, int], observe_prob: float, rng: np.random.Generator
) -> np.ndarray:
    """Bernoulli(observe_prob) boolean mask with at least one True per series."""
    mask = rng.random(shape) < observe_prob
    empty = np.flatnonzero(~mask.any(axis=(1, 2)))
    if empty.size:
        # Force one observation at a uniformly random (time, channel) entry.
        times = rng.integers(0, shape[1], empty.size)
        channels = rng.integers(0, shape[2], empty.size)
        mask[empty, times, channels] = True
    return mask
