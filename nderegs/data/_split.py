"""Random train/test splitting of a data set's leading (example) axis."""

from __future__ import annotations

import numpy as np


def split_indices(
    num_examples: int, test_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Randomly partition ``range(num_examples)`` into sorted train and test indices.

    The test set gets ``round(num_examples * test_fraction)`` examples, but at
    least one, and the training set must keep at least one as well.
    """
    num_test = max(1, round(num_examples * test_fraction))
    if num_test >= num_examples:
        raise ValueError(
            f"cannot split {num_examples} examples with test_fraction={test_fraction}: "
            "both the training and the test set need at least one example"
        )
    order = rng.permutation(num_examples)
    # Sorting keeps the examples in their original relative order inside each split.
    return np.sort(order[num_test:]), np.sort(order[:num_test])
