"""Property-based: `nderegs.solve` returns `diffrax.diffeqsolve`'s Solution over the
surface of diffeqsolve's arguments — solvers (explicit, implicit, SDE), controllers,
dt0, SaveAt, adjoints, events, states, dtypes, max_steps, dtype promotion.

Explicit solvers: bitwise (`ts`, `ys`, the dense interpolant) and the same step counts.
Implicit solvers: the wrapper's solver state (which consumes `y_error`) changes the
compiled program, so `y_error` can round differently in the last bit and move a step by
round-off: the same result and step counts, and `ts`/`ys` within `_IMPLICIT_RTOL`,
`_IMPLICIT_ATOL` (the tolerance docs/guide.md states; every drawn example so far was bitwise).

Two tests share the comparison:

- `test_solution_equals_diffeqsolve` draws whole combinations (each compiles): every
  example is solved for `VARIANTS` decay rates at once, vmapped, and differentiated.
- `test_drawn_numbers_give_diffeqsolves_solution` draws hundreds of calls over the
  `STRUCTURES`, each compiled once with the numbers (states, times, tolerances, PID
  coefficients, step/jump/save times, dt0, rates, event levels) as traced arguments.

The default profile's draw is derandomized (`derandomize=True`): the same examples on
every run, given the same loaded `nderegs` modules (hypothesis also draws constants it
finds in the project's loaded modules, so a run of other tests first may change it). A
failure prints the example and a `@reproduce_failure` blob that replays it exactly.
`--hypothesis-profile=thorough` runs many more examples of both, drawn afresh each run."""

from collections.abc import Callable
import functools
from typing import NamedTuple

import diffrax
import hypothesis
from hypothesis import given, settings
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nderegs

EXPLICIT = [
    diffrax.Tsit5,
    diffrax.Dopri5,
    diffrax.Dopri8,
    diffrax.Bosh3,
    diffrax.Heun,
    diffrax.Midpoint,
    diffrax.Ralston,
]
IMPLICIT = [diffrax.Kvaerno3, diffrax.Kvaerno4, diffrax.Kvaerno5, diffrax.ImplicitEuler]
#: Implicit-explicit: the field's forcing explicit, a stiff decay implicit (a MultiTerm).
IMEX = [diffrax.KenCarp3, diffrax.KenCarp4, diffrax.KenCarp5, diffrax.Sil3]
#: Adaptive, but outside the NFE cost model (`h.nfe` is None).
UNCOUNTED = [diffrax.ReversibleHeun]
#: How closely implicit solves' `ts`/`ys` are compared (docs/guide.md states it).
_IMPLICIT_RTOL, _IMPLICIT_ATOL = 1e-4, 1e-5
#: The default profile (CI) draws the same examples every run; others draw afresh. A
#: failure prints a `@reproduce_failure` blob either way.
_DEFAULT_PROFILE = settings.get_current_profile_name() == "default"
_REPRODUCIBLE = dict(derandomize=_DEFAULT_PROFILE, print_blob=True)


def _stiff_decay(t, y, args):
    return jax.tree_util.tree_map(lambda x: -10 * args["rate"].astype(x.dtype) * x, y)


def _terms(solver):
    if type(solver) in IMEX:
        return diffrax.MultiTerm(diffrax.ODETerm(_field), diffrax.ODETerm(_stiff_decay))
    return diffrax.ODETerm(_field)


def _field(t, y, args):
    rate = args["rate"]
    return jax.tree_util.tree_map(
        lambda x: -rate.astype(x.dtype) * x + jnp.sin(t).astype(x.dtype), y
    )


#: The solvers of each family `test_solution_equals_diffeqsolve` draws from.
FAMILIES = {"explicit": EXPLICIT + UNCOUNTED, "implicit": IMPLICIT, "imex": IMEX}


@st.composite
def problems(draw, family: str):
    """A whole diffeqsolve call with a solver of `family` (a key of `FAMILIES`)."""
    implicit = family != "explicit"
    dtype = draw(st.sampled_from(["float32", "float64"]))
    # implicit solvers: real states (their root finder's Jacobian)
    shape = draw(st.sampled_from(["vector", "scalar", "pytree"] + ["complex"] * (not implicit)))
    # numpy: drawn outside the test's float64 mode, where jnp would truncate to float32
    real = np.dtype(dtype)
    if shape == "vector":
        y0 = np.array([1.0, -0.5, 2.0], real)
    elif shape == "scalar":
        y0 = np.asarray(1.5, real)
    elif shape == "pytree":
        y0 = {"a": np.array([1.0, 2.0], real), "b": (np.asarray(-1.0, real),)}
    else:
        y0 = np.array([1.0 + 0.5j, -0.2j], "complex64" if dtype == "float32" else "complex128")
    solver = draw(st.sampled_from(FAMILIES[family]))()
    time_dtype = draw(st.sampled_from([dtype, "float32", "int32"]))
    t1 = draw(st.sampled_from([1, 2]))
    rtol = draw(st.sampled_from([1e-3, 1e-5]))
    pid = diffrax.PIDController(
        rtol=rtol,
        atol=rtol,
        pcoeff=draw(st.sampled_from([0.0, 0.1, 0.3])),
        icoeff=draw(st.sampled_from([1.0, 0.3])),
        dcoeff=draw(st.sampled_from([0.0, 0.1])),
        dtmax=draw(st.sampled_from([None, 0.3])),
        dtmin=draw(st.sampled_from([None, 1e-5])),
    )
    controller = pid
    if draw(st.booleans()):
        controller = diffrax.ClipStepSizeController(
            pid,
            step_ts=draw(st.sampled_from([None, [0.25, 0.5]])),
            jump_ts=draw(st.sampled_from([None, [0.7]])),
        )
    saveats = {
        "t1": diffrax.SaveAt(t1=True),
        "t0t1": diffrax.SaveAt(t0=True, t1=True),
        "ts": diffrax.SaveAt(ts=jnp.linspace(0.0, 1.0, 5)),
        "steps": diffrax.SaveAt(steps=True),
        "dense": diffrax.SaveAt(dense=True),
        "fn": diffrax.SaveAt(
            t1=True, fn=lambda t, y, args: jax.tree_util.tree_map(lambda x: x * 2, y)
        ),
        "subs": diffrax.SaveAt(
            subs=[diffrax.SubSaveAt(t1=True), diffrax.SubSaveAt(ts=jnp.array([0.5]))]
        ),
    }
    saveat_name = draw(st.sampled_from(sorted(saveats)))
    saveat = saveats[saveat_name]
    adjoint = draw(
        st.sampled_from(
            [
                diffrax.RecursiveCheckpointAdjoint(),
                diffrax.RecursiveCheckpointAdjoint(checkpoints=64),
                diffrax.DirectAdjoint(),
                diffrax.ForwardMode(),
                diffrax.BacksolveAdjoint(),
                diffrax.ImplicitAdjoint(),
            ]
        )
    )
    if isinstance(adjoint, diffrax.ImplicitAdjoint):  # it accepts SaveAt(t1=True) only
        saveat_name, saveat = "t1", saveats["t1"]
    if isinstance(adjoint, diffrax.BacksolveAdjoint) and saveat_name not in ("t1", "t0t1", "ts"):
        adjoint = diffrax.RecursiveCheckpointAdjoint()  # what BacksolveAdjoint supports
    event = None
    if draw(st.booleans()) and shape in ("vector", "scalar"):
        event = diffrax.Event(lambda t, y, args, **kw: jnp.real(jnp.ravel(y)[0]) - 0.3)
    return dict(
        y0=y0,
        solver=solver,
        t0=np.asarray(0, time_dtype),
        t1=np.asarray(t1, time_dtype),
        dt0=draw(st.sampled_from([None, 0.05])),
        controller=controller,
        saveat=saveat,
        adjoint=adjoint,
        event=event,
        # Few steps: some of the vmapped variants stop at max_steps, others finish.
        max_steps=draw(st.sampled_from([4096, 8, 16])),
        strict=draw(st.booleans()),
        dense=saveat_name == "dense",
    )


def _compare(a, b, implicit):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        x, y = np.asarray(x), np.asarray(y)
        assert x.shape == y.shape and x.dtype == y.dtype
        if implicit:
            finite = np.isfinite(y)
            np.testing.assert_allclose(
                x[finite], y[finite], rtol=_IMPLICIT_RTOL, atol=_IMPLICIT_ATOL
            )
        else:
            np.testing.assert_array_equal(x, y)


#: Each drawn combination is solved for this many decay rates of the field at once
#: (vmapped), so one compilation checks a batch of different step sequences, event
#: times and max_steps hits. It adds variety within a combination, not combinations.
VARIANTS = 30
_COUNTS = ("num_steps", "num_accepted_steps", "num_rejected_steps")


def _outputs(sol, dense: bool):
    """What a Solution holds that the test compares (the counts; the dense evaluation)."""
    out = {"ts": sol.ts, "ys": sol.ys, "result": sol.result}
    out["stats"] = {key: sol.stats[key] for key in _COUNTS}
    if dense:
        out["dense"] = sol.evaluate(0.37)
    return out


def _finite_sum(tree):
    """The real parts of the finite entries, summed in float64 (saved rows past the
    last step are inf)."""
    leaves = jax.tree_util.tree_leaves(tree)
    return sum(
        jnp.sum(jnp.real(jnp.where(jnp.isfinite(x), x, 0))).astype(jnp.float64) for x in leaves
    )


#: The families the default run draws: the implicit one's solutions are compared in the
#: numbers test below (Kvaerno5, ImplicitEuler) and its gradients in test_dropin.py
#: (Kvaerno5 with DirectAdjoint and ForwardMode); IMEX solvers solve implicitly too.
DEFAULT_FAMILIES = ("explicit", "imex")


@pytest.mark.parametrize("family", list(DEFAULT_FAMILIES if _DEFAULT_PROFILE else FAMILIES))
@given(st.data())
# Each example compiles 3 programs (10-20 s on 2 cores). By default one per family of
# DEFAULT_FAMILIES: hypothesis' first draw, the simplest (the family's first solver on a
# float32 vector, dense SaveAt, default adjoint), while the numbers test below carries
# the breadth of states, dtypes, SaveAts, adjoints and events. Other profiles: a third of
# their examples per family, every family.
@settings(max_examples=1 if _DEFAULT_PROFILE else settings().max_examples // 3, **_REPRODUCIBLE)
def test_solution_equals_diffeqsolve(family, data):
    implicit = family != "explicit"
    p = data.draw(problems(family), label="problem")
    rates = data.draw(
        st.lists(st.floats(0.25, 6.0), min_size=VARIANTS, max_size=VARIANTS, unique=True),
        label="rates",
    )
    hypothesis.event(f"solver: {type(p['solver']).__name__}, {type(p['adjoint']).__name__}")
    with jax.enable_x64(True), jax.numpy_dtype_promotion("strict" if p["strict"] else "standard"):
        term = _terms(p["solver"])
        kwargs = dict(
            saveat=p["saveat"],
            stepsize_controller=p["controller"],
            adjoint=p["adjoint"],
            max_steps=p["max_steps"],
            throw=False,
            event=p["event"],
        )
        rates = jnp.asarray(rates, jnp.float64)

        def call(rate):
            return (term, p["solver"], p["t0"], p["t1"], p["dt0"], p["y0"], {"rate": rate})

        def reference(rate):
            return _outputs(diffrax.diffeqsolve(*call(rate), **kwargs), p["dense"])

        def ours(rate):
            sol, h = nderegs.solve(*call(rate), **kwargs)
            # A scalar of the solve and R_E, differentiated below: its gradient is finite.
            error = jnp.zeros((), jnp.float64) if h.error is None else h.error
            if isinstance(p["adjoint"], diffrax.BacksolveAdjoint):
                # nderegs refuses R_E's gradient there (it would silently be zero)
                error = jax.lax.stop_gradient(error)
            scalar = _finite_sum(sol.ys) + error.astype(jnp.float64)
            return scalar, (_outputs(sol, p["dense"]), error, h.nfe)

        try:
            ref = jax.vmap(reference)(rates)
        except Exception as refused:  # a combination diffeqsolve refuses: so must we
            with pytest.raises(Exception) as ours_refused:
                jax.vmap(lambda r: ours(r)[1])(rates)
            assert type(ours_refused.value) is type(refused), ours_refused.value
            return
        # The solve as a user calls it (not the primal of a gradient, which XLA compiles
        # differently), compared below.
        got, error, nfe = jax.vmap(lambda r: ours(r)[1])(rates)
        differentiate = jax.jacfwd if isinstance(p["adjoint"], diffrax.ForwardMode) else jax.grad
        gradient = np.zeros(VARIANTS)
        # ImplicitAdjoint's gradient is a steady state's, which this forced field has not
        # (tests/test_dropin.py checks it on one that has).
        if not isinstance(p["adjoint"], diffrax.ImplicitAdjoint):
            try:
                gradient = jax.vmap(differentiate(lambda r: ours(r)[0]))(rates)
            except Exception as failure:  # then diffrax fails to differentiate it the same way
                with pytest.raises(Exception) as diffrax_failure:
                    jax.vmap(differentiate(lambda r: _finite_sum(reference(r)["ys"])))(rates)
                assert type(diffrax_failure.value) is type(failure), failure

        np.testing.assert_array_equal(got["result"]._value, ref["result"]._value)
        for key in _COUNTS:  # every variant's steps, accepted and rejected: exactly
            np.testing.assert_array_equal(got["stats"][key], ref["stats"][key], err_msg=key)
        _compare(got["ts"], ref["ts"], implicit)
        _compare(got["ys"], ref["ys"], implicit)
        if p["dense"]:
            # Explicit: every variant, bitwise (a failed solve's interpolant included).
            # Implicit: those that reached t1 or an event (the others' last steps may differ).
            finished = [diffrax.RESULTS.successful._value, diffrax.RESULTS.event_occurred._value]
            done = np.isin(np.asarray(ref["result"]._value), finished) | (not implicit)
            _compare(
                jax.tree_util.tree_map(lambda x: x[done], got["dense"]),
                jax.tree_util.tree_map(lambda x: x[done], ref["dense"]),
                implicit,
            )
        assert np.all(np.isfinite(error)) and np.all(np.isfinite(gradient))
        if nfe is not None:
            assert implicit is False
            assert np.all(np.asarray(nfe) >= np.asarray(ref["stats"]["num_steps"]))
        else:  # explicit RK solvers count their evaluations, unless ImplicitAdjoint saves nothing
            assert (
                implicit
                or isinstance(p["adjoint"], diffrax.ImplicitAdjoint)
                or type(p["solver"]) in UNCOUNTED
            )


class Structure(NamedTuple):
    """The static half of a diffeqsolve call (what compiles); `numbers()` draws the
    rest — states, times, step sizes, tolerances, PID coefficients, step/jump/save
    times, the field's rate and the event's level — as traced arguments."""

    solver: type
    shape: str
    dtype: str
    time_dtype: str
    saveat: str
    controller: str = "pid"  # "pid", "pid+bounds" (dtmin, dtmax), "clip" (step_ts, jump_ts)
    dt0: bool = False
    adjoint: Callable[[], diffrax.AbstractAdjoint] = diffrax.RecursiveCheckpointAdjoint
    event: bool = False
    max_steps: int = 4096
    strict: bool = True


#: Spans the state kinds, dtypes, time dtypes, SaveAts, controllers, adjoints, events
#: and max_steps, with explicit and implicit solvers; each compiles once per test
#: process (two programs of 2-5 s each on a 2-core machine: ten structures keep the
#: test near a minute). `test_solution_equals_diffeqsolve` draws every adaptive ODE
#: solver under the thorough profile (the default run: one example per solver family).
STRUCTURES = [
    Structure(
        diffrax.Tsit5,
        "vector",
        "float64",
        "float64",
        "ts",
        "clip",
        dt0=True,
        adjoint=diffrax.BacksolveAdjoint,
    ),
    Structure(diffrax.Dopri5, "scalar", "float32", "float32", "steps", "pid+bounds", max_steps=16),
    Structure(
        diffrax.Dopri8,
        "pytree",
        "float64",
        "float64",
        "dense",
        adjoint=functools.partial(diffrax.RecursiveCheckpointAdjoint, checkpoints=64),
    ),
    Structure(
        diffrax.Bosh3, "complex", "float32", "float32", "t0t1", adjoint=diffrax.DirectAdjoint
    ),
    Structure(
        diffrax.Heun, "vector", "float64", "int32", "subs", dt0=True, adjoint=diffrax.ForwardMode
    ),
    Structure(diffrax.Ralston, "scalar", "float64", "float64", "fn", "clip", event=True),
    Structure(diffrax.Dopri5, "vector", "float64", "float32", "ts", event=True, strict=False),
    Structure(diffrax.Kvaerno5, "scalar", "float32", "float64", "dense", dt0=True, strict=False),
    Structure(
        diffrax.Kvaerno4, "pytree", "float64", "float64", "t1", adjoint=diffrax.ImplicitAdjoint
    ),
    Structure(diffrax.ImplicitEuler, "vector", "float64", "float64", "steps"),
]


def _state(shape, dtype, values):
    if shape == "vector":
        return values[:3].astype(dtype)
    if shape == "scalar":
        return values[0].astype(dtype)
    if shape == "pytree":
        return {"a": values[:2].astype(dtype), "b": (values[2].astype(dtype),)}
    complex_dtype = "complex64" if dtype == "float32" else "complex128"
    return (values[:2] + 1j * values[2:4]).astype(complex_dtype)


@st.composite
def numbers(draw, s: Structure):
    """The traced half of a call to `s`, as numpy values in their dtypes."""
    floats = lambda lo, hi: draw(st.floats(lo, hi, allow_nan=False))
    log_uniform = lambda lo, hi: 10 ** floats(np.log10(lo), np.log10(hi))
    if s.time_dtype == "int32":
        t0 = draw(st.integers(-1, 1))
        t1 = t0 + draw(st.integers(1, 3))
    else:
        t0 = floats(-1.0, 0.5)
        t1 = t0 + floats(0.2, 3.0)
    span = float(t1 - t0)
    fractions = lambda n: np.sort(np.array([floats(0.01, 0.99) for _ in range(n)]))
    time = np.dtype(s.time_dtype if s.time_dtype != "int32" else "float64")
    implicit = s.solver in IMPLICIT + IMEX
    # implicit: tight tolerances, so a step moved by round-off moves the solution by far
    # less than _IMPLICIT_RTOL (module docstring)
    tol = log_uniform(1e-6, 1e-4) if implicit else log_uniform(1e-7, 1e-2)
    n = {
        "y0": _state(s.shape, s.dtype, np.array([floats(-2.0, 2.0) for _ in range(4)])),
        "t0": np.asarray(t0, s.time_dtype),
        "t1": np.asarray(t1, s.time_dtype),
        "rate": np.asarray(floats(0.1, 8.0)),
        "level": np.asarray(floats(-1.0, 1.0)),
        # in the dtypes a user's Python floats take in the solve
        "rtol": np.asarray(tol, s.dtype),
        "atol": np.asarray(tol * log_uniform(0.1, 10.0), s.dtype),
        "pcoeff": np.asarray(floats(0.0, 0.4), s.dtype),
        "icoeff": np.asarray(floats(0.3, 1.0), s.dtype),
        "dcoeff": np.asarray(floats(0.0, 0.2), s.dtype),
        "ts": (t0 + span * fractions(5)).astype(time),
        "step_ts": (t0 + span * fractions(2)).astype(time),
        "jump_ts": (t0 + span * fractions(1)).astype(time),
        "dt0": np.asarray(span * log_uniform(1e-3, 0.5), time),
        "dtmax": np.asarray(span * floats(0.05, 1.0), time),
        "dtmin": np.asarray(span * log_uniform(1e-7, 1e-3), time),
    }
    return n


def _call(s: Structure, n: dict):
    """diffeqsolve's arguments for structure `s` with the numbers `n`."""
    pid = diffrax.PIDController(
        rtol=n["rtol"],
        atol=n["atol"],
        pcoeff=n["pcoeff"],
        icoeff=n["icoeff"],
        dcoeff=n["dcoeff"],
        **({"dtmin": n["dtmin"], "dtmax": n["dtmax"]} if s.controller == "pid+bounds" else {}),
    )
    controller = pid
    if s.controller == "clip":
        controller = diffrax.ClipStepSizeController(pid, step_ts=n["step_ts"], jump_ts=n["jump_ts"])
    saveat = {
        "t1": lambda: diffrax.SaveAt(t1=True),
        "t0t1": lambda: diffrax.SaveAt(t0=True, t1=True),
        "ts": lambda: diffrax.SaveAt(ts=n["ts"]),
        "steps": lambda: diffrax.SaveAt(steps=True),
        "dense": lambda: diffrax.SaveAt(dense=True),
        "fn": lambda: diffrax.SaveAt(
            t1=True, fn=lambda t, y, args: jax.tree_util.tree_map(lambda x: x * 2, y)
        ),
        "subs": lambda: diffrax.SaveAt(
            subs=[diffrax.SubSaveAt(t1=True), diffrax.SubSaveAt(ts=n["ts"][2:])]
        ),
    }[s.saveat]()
    event = None
    if s.event:
        event = diffrax.Event(
            lambda t, y, args, **kw: (
                jnp.real(y0 := jnp.ravel(y)[0]) - args["level"].astype(y0.real.dtype)
            )
        )
    args = (_terms(s.solver()), s.solver(), n["t0"], n["t1"], n["dt0"] if s.dt0 else None)
    args += (n["y0"], {"rate": n["rate"], "level": n["level"]})
    kwargs = dict(
        saveat=saveat,
        stepsize_controller=controller,
        adjoint=s.adjoint(),
        event=event,
        max_steps=s.max_steps,
        throw=False,
    )
    return args, kwargs


@functools.cache
def _programs(s: Structure):
    """diffeqsolve and nderegs.solve for `s`, jitted over the numbers: compiled once
    per structure, then run for every drawn set of numbers."""

    def outputs(sol, n):
        out = _outputs(sol, dense=False)
        if s.saveat == "dense":
            out["dense"] = sol.evaluate(n["ts"][1])
        return out

    def reference(n):
        args, kwargs = _call(s, n)
        return outputs(diffrax.diffeqsolve(*args, **kwargs), n)

    def ours(n):
        args, kwargs = _call(s, n)
        sol, h = nderegs.solve(*args, **kwargs)
        return outputs(sol, n), h.error, h.nfe

    return jax.jit(reference), jax.jit(ours)


@given(st.sampled_from(STRUCTURES).flatmap(lambda s: st.tuples(st.just(s), numbers(s))))
@settings(max_examples=min(50 * settings().max_examples, 3000), **_REPRODUCIBLE)
def test_drawn_numbers_give_diffeqsolves_solution(structure_and_numbers):
    """Hundreds of drawn calls (50 per example of the profile, at most 3000) over the compiled
    `STRUCTURES`: states, time spans, dt0, tolerances, PID coefficients, step/jump/save
    times, rates and event levels vary; so do the step sequences, max_steps hits and
    event times."""
    s, n = structure_and_numbers
    with jax.enable_x64(True), jax.numpy_dtype_promotion("strict" if s.strict else "standard"):
        reference, ours = _programs(s)
        ref = reference(n)
        got, error, nfe = ours(n)
    implicit = s.solver in IMPLICIT + IMEX
    outcome = int(ref["result"]._value) != diffrax.RESULTS.successful._value
    hypothesis.event(f"result: {diffrax.RESULTS[ref['result']] if outcome else 'successful'}")
    assert int(got["result"]._value) == int(ref["result"]._value)
    # implicit solves that stop early may differ in their last steps (module docstring)
    compared = not implicit or int(ref["result"]._value) == diffrax.RESULTS.successful._value
    hypothesis.event(f"values compared: {compared}")
    if compared:
        for key in _COUNTS:  # steps, accepted and rejected: exactly
            assert int(got["stats"][key]) == int(ref["stats"][key]), key
        _compare(got["ts"], ref["ts"], implicit)
        _compare(got["ys"], ref["ys"], implicit)
        if s.saveat == "dense":
            _compare(got["dense"], ref["dense"], implicit)
    if isinstance(s.adjoint(), diffrax.ImplicitAdjoint):
        assert error is None and nfe is None
    else:
        assert np.isfinite(error)
        if implicit or s.solver in UNCOUNTED:
            assert nfe is None
        else:
            assert int(nfe) >= int(ref["stats"]["num_steps"])


@given(
    st.sampled_from([diffrax.SPaRK, diffrax.Heun, diffrax.ShARK]),
    st.sampled_from([1e-2, 1e-3]),
    st.sampled_from([None, 0.05]),
)
@settings(max_examples=4, **_REPRODUCIBLE)
def test_sde_solution_equals_diffeqsolve(solver_cls, tol, dt0):
    """Explicit SDE solvers on one Brownian path: bitwise, the same step counts; dt0=None
    (diffrax picks the first step, as for ODEs) is drawn as it is."""
    hypothesis.event(f"dt0={dt0}")
    solver = solver_cls()
    levy = diffrax.BrownianIncrement if solver_cls is diffrax.Heun else diffrax.SpaceTimeLevyArea
    bm = diffrax.VirtualBrownianTree(
        0.0, 1.0, tol=1e-3, shape=(2,), key=jax.random.key(0), levy_area=levy
    )
    if solver_cls is diffrax.ShARK:  # additive noise
        diffusion = diffrax.ControlTerm(lambda t, y, a: jnp.full((2,), 0.3), bm)
    else:
        diffusion = diffrax.ControlTerm(lambda t, y, a: 0.3 * y, bm)
    diffusion = eqx_diag(diffusion)
    terms = diffrax.MultiTerm(diffrax.ODETerm(lambda t, y, a: -y), diffusion)
    controller = diffrax.PIDController(rtol=tol, atol=tol)
    y0 = jnp.array([1.0, 2.0])
    kwargs = dict(stepsize_controller=controller, saveat=diffrax.SaveAt(ts=jnp.linspace(0, 1, 4)))
    ref = diffrax.diffeqsolve(terms, solver, 0.0, 1.0, dt0, y0, **kwargs)
    sol, h = nderegs.solve(terms, solver, 0.0, 1.0, dt0, y0, **kwargs)
    assert sol.result == ref.result
    _compare(sol.ts, ref.ts, False)
    _compare(sol.ys, ref.ys, False)
    for key in _COUNTS:
        assert int(sol.stats[key]) == int(ref.stats[key]), key
    assert np.isfinite(float(h.error))


def eqx_diag(term):
    """The control term with diagonal noise (the vector field has the state's shape)."""

    class Diagonal(diffrax.ControlTerm):
        def prod(self, vf, control):
            return vf * control

    return Diagonal(term.vector_field, term.control)


def test_profiles_are_registered():
    assert (
        settings.get_profile("thorough").max_examples > settings.get_profile("default").max_examples
    )


# Each test compares two programs' bits: nderegs.solve's and diffeqsolve's.
pytestmark = [
    pytest.mark.bit_identical,
    pytest.mark.filterwarnings("ignore:Complex dtype support"),
]
