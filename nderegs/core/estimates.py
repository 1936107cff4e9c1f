"""Per-step estimates an adaptive Runge--Kutta step already contains.

Two quantities, both computed from values the step has evaluated anyway (no extra
vector-field evaluations):

- the *scaled error* that a PID controller compares with 1,

  EEst = ‖ y_err / (atol + rtol·max(|y0|, |y1|)) ‖,

  with the controller's own norm (RMS by default);
- Shampine's *stiffness estimate* from two stages a, b with equal abscissa c_a = c_b,

  S = ‖f(g_b) − f(g_a)‖ / ‖g_b − g_a‖ = ‖k_b − k_a‖ / (|dt|·‖g_b − g_a‖),

  i.e. ‖Jv‖/‖v‖ for J = ∂f/∂y (exactly, for a linear f) along the direction v of the
  two stages' difference (Hairer & Wanner, Solving ODEs II, §IV.2): between J's smallest
  and largest singular values, which for a normal J are its eigenvalues' moduli — for
  y' = −λy it is exactly λ — and for a non-normal J can be far from them.
"""

from collections.abc import Callable
from typing import NamedTuple

import diffrax
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, PyTree
import numpy as np
import optimistix as optx


def _finite_or_zero(x: Array) -> Array:
    # Double `where`: a NaN/inf must not reach the backward pass through the
    # unselected branch (0 * nan = nan).
    finite = jnp.isfinite(x)
    return jnp.where(finite, x, jnp.zeros_like(x))


def scaled_error(
    y0: PyTree[Array],
    y1: PyTree[Array],
    y_error: PyTree[Array],
    rtol,
    atol,
    norm: Callable[[PyTree[Array]], Array],
) -> Array:
    """EEst = norm(y_err / (atol + rtol·max(|y0|, |y1|))), as `diffrax.PIDController`.

    The value is the controller's own expression, operation for operation (a NaN
    candidate `y1` replaced by `y0` in the scale), so that XLA computes it once for
    both: the estimate then costs nothing beside the controller. Non-finite error
    components occur on steps the controller rejects (whose value the solve discards)
    and on steps a `dtmin` forces through: such a step's estimate counts 0, and the
    derivative is that of the expression with those components zeroed, so that a
    discarded step's zero cotangent never meets `0·inf = nan`.
    """

    def estimate_of(zeroed):
        def estimate(y0, y1, y_error, rtol, atol):
            if zeroed:
                y_error = jtu.tree_map(_finite_or_zero, y_error)
            scale = lambda _y0, _y1, _err: _controller_scale(_y0, _y1, _err, rtol, atol)
            return norm(jtu.tree_map(scale, y0, y1, y_error))

        return estimate

    as_controller, safe = estimate_of(zeroed=False), estimate_of(zeroed=True)

    @jax.custom_jvp
    def estimate(y0, y1, y_error, rtol, atol):
        return _finite_or_zero(as_controller(y0, y1, y_error, rtol, atol))

    @estimate.defjvp
    def _(primals, tangents):
        value = as_controller(*primals)
        finite = jnp.isfinite(value)
        tangent = jax.jvp(safe, primals, tangents)[1]
        zero = jnp.zeros_like(value)
        return jnp.where(finite, value, zero), jnp.where(finite, tangent, zero)

    # The tolerances are arguments, not closed over: a traced one (a tolerance the
    # caller differentiates or vmaps over) must reach the derivative rule as a value.
    return estimate(y0, y1, y_error, rtol, atol)


def _controller_scale(_y0, _y1, _err, rtol, atol):
    _y1 = jnp.where(jnp.isnan(_y1).any(), _y0, _y1)
    _y = jnp.maximum(jnp.abs(_y0), jnp.abs(_y1))
    # As the controller computes it (complex errors over a real scale included).
    with jax.numpy_dtype_promotion("standard"):
        return _err / (atol + _y * rtol)


class StagePair(NamedTuple):
    """Two stages (0-based indices `a < b`) with equal abscissa, and the coefficients
    `d` with g_b − g_a = Σ_j d_j k_j (so the difference never suffers cancellation
    against y0)."""

    a: int
    b: int
    stage_difference: tuple[float, ...]


def find_stage_pair(solver: diffrax.AbstractSolver) -> StagePair | None:
    """The last pair of stages with equal abscissa in an explicit RK tableau, else None.

    Tsit5 and Dopri5 give stages 6 and 7 (1-based; c = 1, stage 7 evaluated at y1).
    """
    if isinstance(solver, diffrax.AbstractWrappedSolver) or not isinstance(
        solver, diffrax.AbstractERK
    ):
        return None
    tableau = solver.tableau
    if not isinstance(tableau, diffrax.ButcherTableau):
        return None
    num_stages = tableau.num_stages
    c = np.concatenate([[0.0], np.asarray(tableau.c, dtype=np.float64)])
    rows = [np.zeros(num_stages)]
    for row in tableau.a_lower:
        padded = np.zeros(num_stages)
        padded[: len(row)] = row
        rows.append(padded)
    for b in range(num_stages - 1, 0, -1):
        for a in range(b - 1, -1, -1):
            if abs(c[a] - c[b]) <= 1e-12:
                return StagePair(a, b, tuple(float(d) for d in rows[b] - rows[a]))
    return None


def times(x: Array, dt) -> Array:
    """x·dt in the dtype that standard promotion gives (times may be float32 while the
    state is float64, or the reverse; strict promotion refuses the implicit cast)."""
    with jax.numpy_dtype_promotion("standard"):
        return x * dt


def _safe_ratio(numerator, denominator):
    positive = denominator > 0
    return jnp.where(positive, numerator / jnp.where(positive, denominator, 1), 0)


def drift_stiffness_estimate(drift: Callable, t1, y1, y_error) -> Array:
    """S = ‖f(t1, y1) − f(t1, y1 − y_err)‖ / ‖y_err‖ for an SDE step: the drift f at
    the step's two solutions (the embedded pair's difference is y_err), the same
    finite-difference eigenvalue estimate as Shampine's, at the cost of two drift
    evaluations; 0 where y_err = 0."""
    y_error = jtu.tree_map(_finite_or_zero, y_error)
    y_other = jtu.tree_map(lambda a, e: a - e, y1, y_error)
    df = jtu.tree_map(lambda a, b: a - b, drift(t1, y1), drift(t1, y_other))
    return _safe_ratio(optx.rms_norm(df), optx.rms_norm(y_error))


def stiffness_estimate(k: PyTree[Array], pair: StagePair, dt) -> Array:
    """S = ‖k_b − k_a‖ / (|dt|·‖g_b − g_a‖) from the stage increments k_i = f_i·dt
    (each leaf of shape (num_stages, ...)); 0 where the denominator is 0."""
    d = np.asarray(pair.stage_difference)
    dk = jtu.tree_map(lambda ki: ki[pair.b] - ki[pair.a], k)
    dg = jtu.tree_map(lambda ki: jnp.tensordot(jnp.asarray(d, dtype=ki.dtype), ki, axes=1), k)
    return _safe_ratio(optx.rms_norm(dk), times(optx.rms_norm(dg), jnp.abs(dt)))
