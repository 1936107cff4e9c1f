"""Minibatch iteration over aligned numpy arrays (features, labels, masks, ...)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from ._checks import check_int


def num_batches(n: int, batch_size: int, drop_last: bool = False) -> int:
    """Number of minibatches one epoch over ``n`` examples yields.

    With ``drop_last`` the final, smaller batch is not counted.
    """
    n = check_int("n", n, minimum=0)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    return n // batch_size if drop_last else -(-n // batch_size)


def iterate_batches(
    arrays: Sequence[np.ndarray],
    batch_size: int,
    *,
    rng: np.random.Generator | None = None,
    drop_last: bool = False,
) -> Iterator[tuple[np.ndarray, ...]]:
    """Yield one epoch of aligned minibatches ``(a[idx], b[idx], ...)``.

    Args:
        arrays: arrays sharing the same leading (example) dimension ``N``.
        batch_size: examples per batch (> 0).
        rng: if given, the examples are visited in a random order drawn from it;
            otherwise in order, and the batches are cheap views (slices).
        drop_last: skip the final batch if it has fewer than ``batch_size`` examples.

    Every example appears exactly once per epoch (except those in a dropped
    final batch). Arguments are validated immediately, not at the first batch.
    """
    arrays = tuple(np.asarray(array) for array in arrays)
    if not arrays:
        raise ValueError("arrays must contain at least one array")
    if any(array.ndim == 0 for array in arrays):
        raise ValueError("every array needs a leading example dimension, got a 0-d array")
    lengths = [len(array) for array in arrays]
    if len(set(lengths)) != 1:
        raise ValueError(f"arrays must share the same leading dimension, got lengths {lengths}")
    if rng is not None and not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng must be a numpy.random.Generator (e.g. np.random.default_rng(seed)) or None, "
            f"got {type(rng).__name__}"
        )
    n = lengths[0]
    count = num_batches(n, batch_size, drop_last)
    order = None if rng is None else rng.permutation(n)
    return _batches(arrays, batch_size, count, order)


def _batches(
    arrays: tuple[np.ndarray, ...], batch_size: int, count: int, order: np.ndarray | None
) -> Iterator[tuple[np.ndarray, ...]]:
    for start in range(0, count * batch_size, batch_size):
        if order is None:
            index: slice | np.ndarray = slice(start, start + batch_size)
        else:
            index = order[start : start + batch_size]
        yield tuple(array[index] for array in arrays)
