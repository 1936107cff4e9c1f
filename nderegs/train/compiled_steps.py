"""Compiled steps shared between the runs of one process.

A run's training step is a function of its task (model class, regularization, solver
options, loss weights: everything `task.loss` reads is a leaf or a static field of the
task's pytree), its optimizer, the shapes, dtypes and shardings of its arguments, and
JAX's numerical flags. Two runs that agree on all of these (a sweep's seeds, a run
resumed in the same process, a comparison's repeats) run the same program, so the
second takes the first's compiled step instead of compiling it again: XLA compilation
is most of a short run's wall-clock on a CPU. The seed, the run directory, the number of
epochs and how the run reports are not part of the program, so they do not split it.

A key that cannot be formed (an unhashable static field) means no sharing, never a
wrong share: `fingerprint` returns None and the run compiles its own step.
"""

from collections import OrderedDict
from collections.abc import Callable, Hashable
import hashlib
from typing import Any, TypeVar

import jax
import numpy as np

_T = TypeVar("_T")

#: JAX settings that change what a traced program computes.
_NUMERIC_FLAGS = (
    "jax_enable_x64",
    "jax_numpy_dtype_promotion",
    "jax_default_matmul_precision",
    "jax_debug_nans",
    "jax_debug_infs",
    "jax_threefry_partitionable",
)

#: How many programs a process keeps; the oldest unused one goes first.
MAX_SHARED = 16

_shared: OrderedDict[Hashable, Any] = OrderedDict()


def _leaf_key(leaf: Any, *, by_value: bool) -> Hashable:
    if isinstance(leaf, jax.Array | np.ndarray | np.generic):
        array_key = (np.shape(leaf), str(leaf.dtype), str(getattr(leaf, "sharding", None)))
        if not by_value:
            return array_key
        digest = hashlib.sha1(np.ascontiguousarray(jax.device_get(leaf)).tobytes()).hexdigest()
        return (*array_key, digest)
    hash(leaf)  # TypeError: not shareable
    return (type(leaf), leaf)


def fingerprint(*, values: Any = (), shapes: Any = (), extra: Hashable = ()) -> Hashable | None:
    """A hashable key of a compiled program: `values` is closed over (its arrays are
    keyed by content), `shapes` are its arguments (their arrays keyed by shape, dtype
    and sharding; everything else by value), `extra` anything else it depends on.
    None where a static part is unhashable."""
    try:
        value_leaves, value_tree = jax.tree_util.tree_flatten(values)
        shape_leaves, shape_tree = jax.tree_util.tree_flatten(shapes)
        key = (
            value_tree,
            tuple(_leaf_key(leaf, by_value=True) for leaf in value_leaves),
            shape_tree,
            tuple(_leaf_key(leaf, by_value=False) for leaf in shape_leaves),
            extra,
            tuple(getattr(jax.config, flag) for flag in _NUMERIC_FLAGS),
        )
        hash(key)
    except TypeError:
        return None
    return key


def shared(key: Hashable | None, make: Callable[[], _T]) -> tuple[_T, bool]:
    """`(program, reused)`: the program stored under `key`, else `make()` (stored
    under `key` unless it is None)."""
    if key is not None and key in _shared:
        _shared.move_to_end(key)
        return _shared[key], True
    program = make()
    if key is not None:
        _shared[key] = program
        while len(_shared) > MAX_SHARED:
            _shared.popitem(last=False)
    return program, False


def clear() -> None:
    """Forget every shared program (each run then compiles its own)."""
    _shared.clear()
