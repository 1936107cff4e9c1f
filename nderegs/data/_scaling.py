"""Per-channel standardisation of masked (partially observed) time series."""

from __future__ import annotations

import numpy as np


def masked_channel_stats(values: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (population, ddof=0) standard deviation of each channel's observed values.

    ``values`` and ``mask`` have shape ``(N, T, D)``; only entries with
    ``mask == 1`` count. Both results have shape ``(D,)`` and dtype float64.
    A channel with no observations gets mean 0 and std 1, and a channel with
    (near-)zero spread gets std 1, so that standardising never divides by zero.
    """
    counts = mask.sum(axis=(0, 1), dtype=np.float64)
    safe_counts = np.maximum(counts, 1.0)
    observed = np.where(mask > 0, values, 0.0).astype(np.float64)
    mean = observed.sum(axis=(0, 1)) / safe_counts
    centred = np.where(mask > 0, values - mean, 0.0)
    std = np.sqrt((centred**2).sum(axis=(0, 1)) / safe_counts)
    mean = np.where(counts > 0, mean, 0.0)
    std = np.where((counts > 0) & (std > 1e-12), std, 1.0)
    return mean, std


def standardize(
    values: np.ndarray, mask: np.ndarray, mean: np.ndarray, std: np.ndarray
) -> np.ndarray:
    """Return ``(values - mean) / std`` as float32, with unobserved entries set to exactly 0."""
    scaled = (values.astype(np.float64) - mean) / std
    return np.where(mask > 0, scaled, 0.0).astype(np.float32)
