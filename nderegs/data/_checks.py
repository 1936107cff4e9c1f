"""Argument validation shared by the data loaders.

Each helper raises a ``ValueError`` (or ``TypeError`` for the wrong kind of
object) whose message names the argument, the value received and what is
accepted, so that bad input never surfaces as an error from deep inside numpy.
"""

from __future__ import annotations

import numbers


class MissingExtra(ImportError):
    """A data set needs an optional dependency that is not installed; the message names
    the extra (``pip install 'nderegs[...]'``) and any alternative."""


def check_int(name: str, value: object, *, minimum: int) -> int:
    """Return ``value`` as an ``int`` if it is an integer ``>= minimum``."""
    # bool is an Integral too, but passing True as a count is always a mistake.
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def check_float(
    name: str,
    value: object,
    *,
    low: float,
    high: float = float("inf"),
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """Return ``value`` as a ``float`` if it is a real number inside the interval."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    above = value >= low if low_inclusive else value > low
    below = value <= high if high_inclusive else value < high
    if not (above and below):  # also rejects NaN
        interval = f"{'[' if low_inclusive else '('}{low}, {high}{']' if high_inclusive else ')'}"
        raise ValueError(f"{name} must lie in {interval}, got {value}")
    return value


def check_fraction(name: str, value: object) -> float:
    """Return ``value`` if it is a fraction strictly between 0 and 1."""
    return check_float(name, value, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)


def check_seed(value: object) -> int:
    """Return ``value`` if it is a valid non-negative integer seed."""
    return check_int("seed", value, minimum=0)
