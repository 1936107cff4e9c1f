"""Independent reference computations for the core tests: re-take every accepted step
of a plain `diffrax.diffeqsolve` with `solver.step`, one step at a time in Python."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np


def accepted_steps(term, solver, t0, t1, y0, args, controller, dt0=None):
    """(ts, ys) of the accepted steps of a plain diffrax solve: ts[0] = t0, ys[0] = y0."""
    sol = diffrax.diffeqsolve(
        term,
        solver,
        t0,
        t1,
        dt0,
        y0,
        args,
        stepsize_controller=controller,
        saveat=diffrax.SaveAt(t0=True, steps=True),
        max_steps=100_000,
    )
    n = int(sol.stats["num_accepted_steps"]) + 1
    ts = np.asarray(sol.ts[:n])
    ys = jax.tree_util.tree_map(lambda y: y[:n], sol.ys)
    return ts, ys


def _rms(x):
    return float(np.sqrt(np.mean(np.square(x))))


@eqx.filter_jit  # compiled once per term, solver and shapes (and per non-array args)
def _one_step(term, solver, t_a, t_b, y_a, args):
    return solver.step(term, t_a, t_b, y_a, args, solver.init(term, t_a, t_b, y_a, args), True)


def step_terms(term, solver, ts, ys, args, rtol, atol):
    """EEst_j·|dt_j| of each step of the grid, each re-taken from the saved start state,
    with the error norm written out in numpy (RMS over all state components)."""
    terms = []
    for j in range(len(ts) - 1):
        y_a = jax.tree_util.tree_map(lambda y, j=j: y[j], ys)
        y_b, y_err, _, _, _ = _one_step(term, solver, ts[j], ts[j + 1], y_a, args)
        leaves = [
            np.asarray(e) / (atol + rtol * np.maximum(np.abs(a), np.abs(b)))
            for e, a, b in zip(
                jax.tree_util.tree_leaves(y_err),
                jax.tree_util.tree_leaves(y_a),
                jax.tree_util.tree_leaves(y_b),
            )
        ]
        flat = np.concatenate([x.ravel() for x in leaves])
        terms.append(_rms(flat) * abs(ts[j + 1] - ts[j]))
    return np.array(terms)


def frozen_grid_error(term, solver, ts, y0, args, rtol, atol):
    """R_E as a function of (y0, args) on a fixed step grid: the quantity whose
    derivative discretise-then-optimise gradients compute (step sizes are constants)."""

    def one_step(y, t_pair):
        t_a, t_b = t_pair[0], t_pair[1]
        state = solver.init(term, t_a, t_b, y, args)
        y_next, y_err, _, _, _ = solver.step(term, t_a, t_b, y, args, state, True)
        scale = atol + rtol * jnp.maximum(jnp.abs(y), jnp.abs(y_next))
        return y_next, jnp.sqrt(jnp.mean((y_err / scale) ** 2)) * (t_b - t_a)

    pairs = jnp.stack([jnp.asarray(ts[:-1]), jnp.asarray(ts[1:])], axis=1)
    _, terms = jax.lax.scan(one_step, y0, pairs)
    return jnp.sum(terms)
