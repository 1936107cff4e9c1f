"""The spiral SDE of paper 1: moments of many sample paths to fit.

    du1 = (−a·u1³ + b·u2³) dt + g·u1 dW1,   du2 = (−b·u1³ − a·u2³) dt + g·u2 dW2,

from u(0) = (2, 0), observed at `num_times` points on [0, 1]. The target of training
is the mean and variance over `num_trajectories` Itô paths (generated offline with
diffrax: Heun on the equivalent Stratonovich SDE with a fine fixed step); the test
moments come from an independent set of paths.
"""

from dataclasses import dataclass

import diffrax
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np

from ._checks import check_int


@dataclass(frozen=True)
class MomentData:
    """Per-time mean and variance of sample paths from a fixed initial state."""

    name: str
    times: np.ndarray  # (T,) float32 in [0, 1]
    y0: np.ndarray  # (d,)
    mean_train: np.ndarray  # (T, d)
    var_train: np.ndarray  # (T, d)
    mean_test: np.ndarray  # (T, d)
    var_test: np.ndarray  # (T, d)
    num_trajectories: int

    @property
    def num_channels(self) -> int:
        return self.y0.shape[0]


def _paths(key, y0, times, a, b, g, num_trajectories, dt):
    def stratonovich_drift(t, u, args):
        # Itô drift minus ½·g_i·∂g_i/∂u_i = ½·g²·u_i: the same paths in Stratonovich form.
        ito = jnp.stack([-a * u[0] ** 3 + b * u[1] ** 3, -b * u[0] ** 3 - a * u[1] ** 3])
        return ito - 0.5 * g**2 * u

    def one(k):
        bm = diffrax.UnsafeBrownianPath(shape=(2,), key=k)
        terms = diffrax.MultiTerm(
            diffrax.ODETerm(stratonovich_drift),
            diffrax.ControlTerm(lambda t, u, args: lx.DiagonalLinearOperator(g * u), bm),
        )
        # Heun (second order in the drift) on a fixed fine grid.
        return diffrax.diffeqsolve(
            terms,
            diffrax.Heun(),
            0.0,
            1.0,
            dt,
            y0,
            saveat=diffrax.SaveAt(ts=times),
            max_steps=None,
            adjoint=diffrax.ForwardMode(),
        ).ys

    keys = jax.random.split(key, num_trajectories)
    return jax.jit(jax.vmap(one))(keys)


def make_spiral_sde(
    num_trajectories: int = 10_000,
    num_times: int = 30,
    a: float = 0.1,
    b: float = 2.0,
    g: float = 0.2,
    seed: int = 0,
    dt: float = 1e-3,
) -> MomentData:
    check_int("num_trajectories", num_trajectories, minimum=2)
    check_int("num_times", num_times, minimum=2)
    times = np.linspace(0.0, 1.0, num_times, dtype=np.float32)
    y0 = jnp.array([2.0, 0.0], dtype=jnp.float32)
    moments = []
    for k in jax.random.split(jax.random.key(seed), 2):  # train, test
        paths = np.asarray(_paths(k, y0, jnp.asarray(times), a, b, g, num_trajectories, dt))
        moments += [paths.mean(axis=0), paths.var(axis=0, ddof=1)]
    return MomentData(
        name="spiral_sde",
        times=times,
        y0=np.asarray(y0),
        mean_train=moments[0].astype(np.float32),
        var_train=moments[1].astype(np.float32),
        mean_test=moments[2].astype(np.float32),
        var_test=moments[3].astype(np.float32),
        num_trajectories=num_trajectories,
    )
