"""The 2-D toy densities of the CNF literature (FFJORD, RNODE, TayNODE), generated
offline: scikit-learn's two moons and circles, eight Gaussians, the pinwheel, two
spirals and the checkerboard. Each is roughly centred, with most mass in [-4, 4]²."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import sklearn.datasets

from ._checks import check_int, check_seed
from .containers import DensityData


def _moons(n: int, rng: np.random.Generator) -> np.ndarray:
    x, _ = sklearn.datasets.make_moons(n, noise=0.1, random_state=int(rng.integers(2**31)))
    return np.asarray(x) * 2 + np.array([-1.0, -0.2])


def _circles(n: int, rng: np.random.Generator) -> np.ndarray:
    x, _ = sklearn.datasets.make_circles(
        n, factor=0.5, noise=0.08, random_state=int(rng.integers(2**31))
    )
    return np.asarray(x) * 3


def _eight_gaussians(n: int, rng: np.random.Generator) -> np.ndarray:
    angles = 2 * np.pi * np.arange(8) / 8
    centres = 4 * np.stack([np.cos(angles), np.sin(angles)], -1)
    which = rng.integers(8, size=n)
    return (centres[which] + 0.5 * rng.standard_normal((n, 2))) / np.sqrt(2)


def _pinwheel(n: int, rng: np.random.Generator) -> np.ndarray:
    """Five arms; the mirror image of FFJORD's (its arms turn the other way: the same
    density up to a reflection, so the same NLL)."""
    arms, radial_sd, tangential_sd, rate = 5, 0.3, 0.1, 0.25
    arm = rng.integers(arms, size=n)
    features = rng.standard_normal((n, 2)) * [radial_sd, tangential_sd] + [1.0, 0.0]
    angle = 2 * np.pi * arm / arms + rate * np.exp(features[:, 0])
    cos, sin = np.cos(angle), np.sin(angle)
    rotated = np.stack(
        [cos * features[:, 0] - sin * features[:, 1], sin * features[:, 0] + cos * features[:, 1]],
        -1,
    )
    return 2 * rotated


def _two_spirals(n: int, rng: np.random.Generator) -> np.ndarray:
    turn = np.sqrt(rng.uniform(size=n)) * 3 * np.pi
    side = np.where(rng.uniform(size=n) < 0.5, -1.0, 1.0)[:, None]
    offset = rng.uniform(0, 0.5, size=(n, 2))
    arm = (np.stack([-np.cos(turn) * turn, np.sin(turn) * turn], -1) + offset) * side
    return arm / 3 + 0.1 * rng.standard_normal((n, 2))


def _checkerboard(n: int, rng: np.random.Generator) -> np.ndarray:
    x1 = rng.uniform(-2, 2, size=n)
    x2 = rng.uniform(size=n) - 2 * rng.integers(2, size=n) + np.floor(x1) % 2
    return 2 * np.stack([x1, x2], -1)


#: Name -> generator of n points of the density.
TOY_DENSITIES: dict[str, Callable[[int, np.random.Generator], np.ndarray]] = {
    "moons": _moons,
    "circles": _circles,
    "8gaussians": _eight_gaussians,
    "pinwheel": _pinwheel,
    "2spirals": _two_spirals,
    "checkerboard": _checkerboard,
}


def make_toy_density(
    name: str, num_train: int = 20_000, num_test: int = 5_000, seed: int = 0
) -> DensityData:
    """`num_train` and `num_test` independent samples of the 2-D toy density `name`
    (one of `TOY_DENSITIES`), deterministic given `seed`."""
    if name not in TOY_DENSITIES:
        raise ValueError(f"unknown 2-D density {name!r}; accepted: {', '.join(TOY_DENSITIES)}")
    num_train = check_int("num_train", num_train, minimum=1)
    num_test = check_int("num_test", num_test, minimum=1)
    rng = np.random.default_rng([check_seed(seed), 2024])
    generate = TOY_DENSITIES[name]
    x_train = generate(num_train, rng).astype(np.float32)
    x_test = generate(num_test, rng).astype(np.float32)
    return DensityData(name=name, x_train=x_train, x_test=x_test)
