"""Continuous normalizing flows: `nderegs.CNF` against independent computations, and
the density task (2-D toys, MAF readers, training and comparison through the CLI)."""

import csv
import json
import math
from pathlib import Path

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny import TINY_CNF

import nderegs
from nderegs.config import load_config, METHOD_COMPONENTS
from nderegs.data import load_maf, MAF_DATASETS, make_toy_density, TOY_DENSITIES
from nderegs.layers import BatchedField, FlowDynamics, standard_normal_log_prob
from nderegs.models import ConcatSquashMLP
from nderegs.regularization import VANILLA
from nderegs.report.runs import run_dir_for


@pytest.fixture
def float64():
    with jax.enable_x64(True):
        yield


class Linear(eqx.Module):
    """f(t, z) = A z."""

    a: jax.Array

    def __call__(self, t, z, args=None):
        return self.a @ z


A = np.array([[-0.3, 0.8], [-0.5, 0.4]])


def _field(scale=1.0, width=16, key=0):
    field = ConcatSquashMLP(2, width, 2, key=jax.random.key(key))
    # Larger weights: a density far from the base normal.
    return jax.tree_util.tree_map(lambda w: w * scale if eqx.is_array(w) else w, field)


# --------------------------------------------------------------------------- #
# The layer against independent computations
# --------------------------------------------------------------------------- #


@pytest.mark.usefixtures("float64")
def test_linear_field_log_density_change_is_minus_trace_times_duration():
    cnf = nderegs.CNF(Linear(A), dim=2, t0=0.5, t1=2.0, rtol=1e-10, atol=1e-10)
    x = jax.random.normal(jax.random.key(1), (5, 2))
    sol, _ = cnf.solve(x)
    z1, delta = sol.ys[0][0], sol.ys[1][0]
    duration = 1.5
    np.testing.assert_allclose(delta, -jnp.trace(A) * duration, rtol=0, atol=1e-12)
    expected_z1 = x @ jax.scipy.linalg.expm(A * duration).T
    np.testing.assert_allclose(z1, expected_z1, rtol=1e-8, atol=1e-9)
    log_p, _ = cnf.log_prob(x)
    np.testing.assert_allclose(
        log_p, standard_normal_log_prob(expected_z1) + jnp.trace(A) * duration, atol=1e-8
    )


@pytest.mark.usefixtures("float64")
def test_hutchinson_noise_is_fixed_within_a_solve():
    """With f = A z, ε^T A ε is constant in time, so Δ(t1) = −ε^T A ε (t1 − t0) exactly
    iff every stage of every step used the solve's one ε."""
    cnf = nderegs.CNF(Linear(A), dim=2, trace="hutchinson", rtol=1e-10, atol=1e-10)
    x = jax.random.normal(jax.random.key(1), (64, 2))
    key = jax.random.key(7)
    sol, h = cnf.solve(x, key=key)
    noise_key = jax.random.split(key, 3)[0]  # the layer's split: noise, STEER, solve
    eps = jax.random.rademacher(noise_key, x.shape, dtype=x.dtype)
    expected = -jnp.einsum("bi,ij,bj->b", eps, A, eps)
    np.testing.assert_allclose(sol.ys[1][0], expected, rtol=0, atol=1e-12)
    assert int(h.num_accepted_steps) > 3  # several steps, many stages
    assert not np.allclose(expected, -jnp.trace(A))  # the noise matters with this A


@pytest.mark.parametrize("noise", ["rademacher", "gaussian"])
@pytest.mark.usefixtures("float64")
def test_hutchinson_estimate_averages_to_the_exact_trace(noise):
    field = _field(scale=2.0)
    z = jax.random.normal(jax.random.key(3), (2,))
    t = 0.3
    exact = jnp.trace(jax.jacfwd(lambda x: field(t, x))(z))
    draws = 20_000
    zs = jnp.broadcast_to(z, (draws, 2))
    key = jax.random.key(4)
    eps = (
        jax.random.rademacher(key, zs.shape, dtype=zs.dtype)
        if noise == "rademacher"
        else jax.random.normal(key, zs.shape, dtype=zs.dtype)
    )
    dz, minus_trace = FlowDynamics(field, eps)(t, (zs, jnp.zeros(draws)), None)
    estimates = -minus_trace
    standard_error = jnp.std(estimates) / math.sqrt(draws)
    assert abs(jnp.mean(estimates) - exact) < 4 * standard_error
    assert standard_error > 0  # a real estimator, not the exact trace
    _, exact_channel = FlowDynamics(field, None)(t, (z[None], jnp.zeros(1)), None)
    np.testing.assert_allclose(-exact_channel[0], exact, rtol=1e-12)
    np.testing.assert_allclose(dz[0], field(t, z), rtol=1e-12)


@pytest.mark.usefixtures("float64")
def test_learned_density_integrates_to_one():
    cnf = nderegs.CNF(_field(scale=2.5), dim=2, rtol=1e-7, atol=1e-7)
    axis = np.linspace(-7.0, 7.0, 281)
    xx, yy = np.meshgrid(axis, axis)
    grid = jnp.asarray(np.stack([xx.ravel(), yy.ravel()], -1))
    log_p, _ = eqx.filter_jit(lambda m, x: m.log_prob(x))(cnf, grid)
    density = np.exp(np.asarray(log_p)).reshape(xx.shape)
    mass = np.trapezoid(np.trapezoid(density, axis, axis=1), axis)
    assert abs(mass - 1.0) < 5e-3, mass
    # ... and it is not the base normal: the flow moved the mass.
    base = np.exp(np.asarray(standard_normal_log_prob(grid))).reshape(xx.shape)
    assert np.abs(density - base).max() > 0.2 * base.max()


_CNF_2D = Path(__file__).parents[1] / "experiments/results/cnf_2d"


@pytest.mark.parametrize("density", ["moons", "pinwheel"])
def test_trained_densities_integrate_to_one(density):
    """The learned densities of the committed CNF experiment (the grids the trained
    flows wrote, seed 0 of every method in the density's comparison table; the data lies
    well inside the box) hold their mass on the box. A missing grid or folder fails."""
    folder = _CNF_2D / density
    with open(folder / "comparison.csv") as table:
        rows = csv.DictReader(line for line in table if not line.startswith("#"))
        methods = [row["method"] for row in rows]
    assert methods
    grids = [run_dir_for(folder, method, 0) / "density.npz" for method in methods]
    missing = [str(grid) for grid in grids if not grid.is_file()]
    assert not missing, missing
    for grid in grids:
        with np.load(grid) as stored:
            box = float(stored["box"])
            density_grid = np.exp(stored["log_density"].astype(np.float64))
        axis = np.linspace(-box, box, density_grid.shape[0])
        mass = np.trapezoid(np.trapezoid(density_grid, axis, axis=1), axis)
        assert 0.98 < mass < 1.01, (grid.parts[-3], mass)


@pytest.mark.usefixtures("float64")
def test_log_prob_of_samples_matches_the_density_carried_by_the_sampling_solve():
    cnf = nderegs.CNF(_field(scale=2.0), dim=2, rtol=1e-9, atol=1e-9)
    x, log_p_carried, h = cnf.sample_and_log_prob(jax.random.key(5), 200)
    assert x.shape == (200, 2) and bool(h.successful)
    log_p, _ = cnf.log_prob(x)
    np.testing.assert_allclose(log_p, log_p_carried, rtol=0, atol=1e-6)
    # The backward solve inverts the forward one.
    sol, _ = cnf.solve(x)
    z1 = jax.random.normal(jax.random.key(5), (200, 2))
    np.testing.assert_allclose(sol.ys[0][0], z1, atol=1e-6)


@pytest.mark.usefixtures("float64")
def test_integrals_are_of_the_flow_alone():
    """RNODE's kinetic energy on a CNF is ∫‖f(t, z)‖² over z only: it equals the same
    integral along a NeuralODE of the field alone (Δ does not leak in)."""
    field = _field(scale=1.5)
    x = jax.random.normal(jax.random.key(6), (8, 2))
    tight = dict(rtol=1e-10, atol=1e-10)
    integrals = (nderegs.KineticEnergy(), nderegs.TaylorDerivative(order=2))
    _, h = nderegs.CNF(field, dim=2, integrals=integrals, **tight).log_prob(x)
    _, reference = nderegs.NeuralODE(field, integrals=integrals, **tight)(x)
    for got, want in zip(h.integrals, reference.integrals):
        np.testing.assert_allclose(got, want, rtol=1e-7)
    # RNODE's Jacobian term: the same Rademacher ε as a plain solve of the field alone
    # with the key the layer hands to `nderegs.solve` (its split: noise, STEER, solve).
    key = jax.random.key(8)
    frobenius = (nderegs.JacobianFrobenius(),)
    with_noise = nderegs.CNF(field, dim=2, integrals=frobenius, **tight)
    _, h = with_noise.log_prob(x, key=key)
    _, reference = nderegs.solve(
        diffrax.ODETerm(BatchedField(field)),
        diffrax.Tsit5(),
        0.0,
        1.0,
        None,
        x,
        stepsize_controller=diffrax.PIDController(**tight),
        key=jax.random.split(key, 3)[2],
        integrals=frobenius,
    )
    np.testing.assert_allclose(h.integrals[0], reference.integrals[0], rtol=1e-7)


def test_bad_input_gets_clear_errors():
    cnf = nderegs.CNF(Linear(A), dim=2)
    with pytest.raises(ValueError, match=r"shape \(batch, 2\)"):
        cnf.log_prob(jnp.zeros((4, 3)))
    with pytest.raises(ValueError, match="needs key="):
        nderegs.CNF(Linear(A), dim=2, trace="hutchinson").log_prob(jnp.zeros((4, 2)))
    with pytest.raises(ValueError, match="JacobianFrobenius draws random noise"):
        nderegs.CNF(Linear(A), dim=2, integrals=(nderegs.JacobianFrobenius(),)).log_prob(
            jnp.zeros((4, 2))
        )
    with pytest.raises(ValueError, match="trace 'exact' or 'hutchinson'"):
        nderegs.CNF(Linear(A), dim=2, trace="brute")
    with pytest.raises(ValueError, match="positive integer n"):
        cnf.sample(jax.random.key(0), 0)


# --------------------------------------------------------------------------- #
# Every method on the density task: finite gradients
# --------------------------------------------------------------------------- #

# Every component, composed into few methods (one compiled solve each); each regularizer
# term still gets its own pullback below. Exact trace: STEER with the global estimates
# and RNODE; each local sampler with TayNODE (vanilla's loss, the NLL, is part of every
# method's: its gradient is checked with each). Hutchinson: the global estimates with
# RNODE; the local error with TayNODE.
EXACT_METHODS = [
    "steer+error+stiffness+rnode",
    "local-error+local-stiffness+taynode",
    "local-error-biased+rnode",
]
# The trace estimate enters the state (z, Δ), so what Hutchinson's noise meets is the
# error and stiffness estimates of that state and the local step re-taken with the same
# noise; RNODE and TayNODE integrate along z alone (checked with the exact trace).
HUTCHINSON_METHODS = ["error+stiffness", "local-error"]
#: Solved with BacksolveAdjoint (the local regularizers need no gradient through the
#: solver, as on a NeuralODE); the others with the config's RecursiveCheckpointAdjoint.
BACKSOLVE = "local-error+local-stiffness+taynode"


def test_the_gradient_matrix_covers_every_component():
    used = {c for m in EXACT_METHODS for c in m.split("+")} | {VANILLA}
    assert used == set(METHOD_COMPONENTS), set(METHOD_COMPONENTS) ^ used
    assert {c for m in HUTCHINSON_METHODS for c in m.split("+")} == {
        "error",
        "stiffness",
        "local-error",
    }


@pytest.mark.parametrize(
    "trace, method",
    [("exact", m) for m in EXACT_METHODS] + [("hutchinson", m) for m in HUTCHINSON_METHODS],
)
def test_every_method_has_finite_gradients_on_the_density_task(trace, method):
    x = jnp.asarray(make_toy_density("pinwheel", 32, 8).x_train)
    config = load_config(
        "configs/cnf_2d.yaml",
        [f"method={method}", f"task.model.trace={trace}", "task.model.width=8"]
        + (["solver.adjoint=backsolve"] if method == BACKSOLVE else []),
    )
    task, _ = config.task.build(0, config.method_regularization(), config.solver)
    model = task.init_model(jax.random.key(0))
    (layer,) = [
        x
        for x in jax.tree_util.tree_leaves(model, is_leaf=lambda x: isinstance(x, nderegs.CNF))
        if isinstance(x, nderegs.CNF)
    ]
    adjoint = (
        diffrax.BacksolveAdjoint if method == BACKSOLVE else diffrax.RecursiveCheckpointAdjoint
    )
    assert type(layer.options.adjoint) is adjoint
    coefficients = task.regularization.coefficient_values(
        task.regularization.init_coefficients(), 0
    )
    terms = [f"reg_{t}" for t in task.regularization.coefficients()]
    assert (terms == []) == (method in ("vanilla", "steer")), terms

    def values(m):
        total, aux = task.loss(m, (x,), jax.random.key(1), coefficients)
        return jnp.stack([total, *(aux[t] for t in terms)])

    # One forward solve, one pullback per value (the loss and each term on its own),
    # compiled as one program: eager, every pullback would dispatch op by op.
    @eqx.filter_jit
    def value_and_rows(m):
        out, pullback = eqx.filter_vjp(values, m)
        return out, jax.vmap(pullback)(jnp.eye(out.shape[0], dtype=out.dtype))

    out, (gradients,) = value_and_rows(model)
    assert bool(jnp.all(jnp.isfinite(out)))
    for row, name in enumerate(["loss", *terms]):
        leaves = [g[row] for g in jax.tree_util.tree_leaves(eqx.filter(gradients, eqx.is_array))]
        assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves), name
        assert sum(float(jnp.sum(jnp.abs(g))) for g in leaves) > 0, name


# --------------------------------------------------------------------------- #
# Data
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("name", sorted(TOY_DENSITIES))
def test_toy_densities(name):
    data = make_toy_density(name, 500, 200, seed=3)
    assert data.x_train.shape == (500, 2) and data.x_test.shape == (200, 2)
    assert data.x_train.dtype == np.float32
    assert np.abs(data.x_train).max() < 6 and np.abs(data.x_train.mean(0)).max() < 1
    again = make_toy_density(name, 500, 200, seed=3)
    np.testing.assert_array_equal(data.x_train, again.x_train)
    assert not np.array_equal(data.x_train, make_toy_density(name, 500, 200, seed=4).x_train)
    assert not np.array_equal(data.x_train[:200], data.x_test)


def test_toy_density_errors():
    with pytest.raises(ValueError, match="accepted: moons"):
        make_toy_density("swiss")


def _table(rng, n, dim):
    return rng.standard_normal((n, dim))


def test_maf_preprocessed_splits_in_npy_and_txt(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "power"
    folder.mkdir()
    splits = {s: _table(rng, n, 6) for s, n in (("train", 50), ("validation", 10), ("test", 20))}
    np.save(folder / "train.npy", splits["train"])
    np.savetxt(folder / "val.txt", splits["validation"])
    np.savetxt(folder / "test.csv", splits["test"], delimiter=",", header="a,b,c,d,e,f")
    data = load_maf("power", tmp_path)
    np.testing.assert_allclose(data.x_train, splits["train"], rtol=1e-6)
    np.testing.assert_allclose(data.x_test, splits["test"], rtol=1e-6)


def test_maf_release_files(tmp_path):
    rng = np.random.default_rng(1)
    (tmp_path / "power").mkdir()
    np.save(tmp_path / "power" / "data.npy", rng.uniform(size=(1000, 8)))
    power = load_maf("power", tmp_path)
    assert power.dim == 6 and power.x_test.shape[0] == 100 and power.x_train.shape[0] == 810
    both = np.concatenate([power.x_train, power.x_test])
    assert np.abs(power.x_train.mean(0)).max() < 0.1 and np.abs(both.std(0) - 1).max() < 0.1

    (tmp_path / "miniboone").mkdir()
    np.save(tmp_path / "miniboone" / "data.npy", _table(rng, 300, 43))
    assert load_maf("miniboone", tmp_path).dim == 43

    (tmp_path / "hepmass").mkdir()
    for split, n in (("train", 400), ("test", 100)):
        label = rng.integers(2, size=(n, 1))
        features = np.hstack([_table(rng, n, 21), rng.integers(3, size=(n, 6))])
        if split == "test":  # as in MAF's release: one column more
            features = np.hstack([features, _table(rng, n, 1)])
        np.savetxt(
            tmp_path / "hepmass" / f"1000_{split}.csv",
            np.hstack([label, features]),
            delimiter=",",
            header="# label," + ",".join(f"f{i}" for i in range(features.shape[1])),
            comments="",
        )
    hepmass = load_maf("hepmass", tmp_path)
    assert hepmass.dim == 21  # the 6 discrete columns are dropped

    # GAS: MAF's pickle written out with to_csv (named columns, Meth/Eth/Time among
    # them), and the UCI text file (comma-separated header, whitespace data).
    sensors = _table(rng, 500, 8)
    near_copies = sensors + 1e-3 * _table(rng, 500, 8)
    others = _table(rng, 500, 3)
    (tmp_path / "gas").mkdir()
    names = ["Meth", "Eth"] + [f"s{i}" for i in range(16)] + ["Time"]
    table = np.hstack([others[:, :2], sensors, near_copies, others[:, 2:]])
    np.savetxt(
        tmp_path / "gas" / "ethylene_CO.txt",
        table,
        delimiter=",",
        header=",".join(names),
        comments="",
    )
    gas = load_maf("gas", tmp_path)
    assert gas.dim == 8  # one of each correlated pair is dropped
    # The first of each pair goes (MAF drops the first column correlated with another);
    # standardised over all rows, then split in order.
    expected = (near_copies - near_copies.mean(0)) / near_copies.std(0)
    np.testing.assert_allclose(gas.x_train, expected[: gas.x_train.shape[0]], rtol=1e-4, atol=1e-5)
    uci = tmp_path / "uci" / "gas"
    uci.mkdir(parents=True)
    header = "Time (seconds), CO conc (ppm), Ethylene conc (ppm), " + ", ".join(
        f"Sensor{i}" for i in range(16)
    )
    np.savetxt(
        uci / "ethylene_CO.txt",
        np.hstack([others, sensors, near_copies]),
        header=header,
        comments="",
    )
    assert load_maf("gas", tmp_path / "uci").dim == 8

    h5py = pytest.importorskip("h5py")
    (tmp_path / "BSDS300").mkdir()
    with h5py.File(tmp_path / "BSDS300" / "BSDS300.hdf5", "w") as f:
        for split, n in (("train", 40), ("validation", 10), ("test", 20)):
            f[split] = _table(rng, n, 63)
    assert load_maf("bsds300", tmp_path).x_test.shape == (20, 63)


def test_maf_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        load_maf("power", tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match=r"power/data\.npy|data\.npy"):
        load_maf("power", tmp_path)
    with pytest.raises(ValueError, match="accepted: power"):
        load_maf("cifar", tmp_path)
    (tmp_path / "power").mkdir()
    np.save(tmp_path / "power" / "train.npy", np.zeros((5, 6)))
    np.save(tmp_path / "power" / "test.npy", np.zeros((5, 6)))
    with pytest.raises(FileNotFoundError, match="not validation"):
        load_maf("power", tmp_path)
    (tmp_path / "gas").mkdir()
    for split in ("train", "validation", "test"):
        np.save(tmp_path / "gas" / f"{split}.npy", np.zeros((5, 7)))
    with pytest.raises(ValueError, match="7 features; gas has 8"):
        load_maf("gas", tmp_path)
    (tmp_path / "hepmass").mkdir()
    (tmp_path / "hepmass" / "train.txt").write_text("1 2 3\n3 x 5\n6 7 8\n")
    (tmp_path / "hepmass" / "validation.txt").write_text("1\n")
    (tmp_path / "hepmass" / "test.txt").write_text("1\n")
    with pytest.raises(ValueError, match="cannot read .*train.txt"):
        load_maf("hepmass", tmp_path)
    (tmp_path / "other" / "gas").mkdir(parents=True)
    (tmp_path / "other" / "gas" / "ethylene_CO.pickle").write_bytes(b"\x80")
    with pytest.raises(ValueError, match="pandas pickle"):
        load_maf("gas", tmp_path / "other")
    assert set(MAF_DATASETS) == {"power", "gas", "hepmass", "miniboone", "bsds300"}


# --------------------------------------------------------------------------- #
# Through the CLI
# --------------------------------------------------------------------------- #


def test_train_and_compare_density_from_the_cli(tmp_path, capsys):
    from nderegs.cli import main

    out = tmp_path / "cmp"
    status = main(
        ["compare", "configs/cnf_2d.yaml", *TINY_CNF, "--methods", "vanilla,error"]
        + ["--seeds", "1", "--output-dir", str(out)]
    )
    assert status == 0
    table = (out / "comparison.md").read_text()
    assert "Test NLL (nats)" in table and "Test NLL − vanilla" in table
    assert "| `vanilla` | " in table and "+0.000" in table
    run = out / "error" / "seed0"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["metric"] == "nll" and math.isfinite(summary["test_metric"])
    assert summary["figures"] == ["density.npz", "density.png"]
    grid = np.load(run / "density.npz")["log_density"]
    assert grid.shape == (120, 120) and np.all(np.isfinite(grid))
    assert (out / "densities.png").is_file()
    columns = next(
        line
        for line in (out / "comparison.csv").read_text().splitlines()
        if line.startswith("method")
    )
    assert "test_nll_minus_vanilla" in columns


def test_tabular_config_trains_with_hutchinson(tmp_path):
    from nderegs.train import train

    rng = np.random.default_rng(2)
    (tmp_path / "data" / "power").mkdir(parents=True)
    # Batches of 128 throughout: one evaluation program.
    for split, n in (("train", 256), ("validation", 32), ("test", 128)):
        np.save(tmp_path / "data" / "power" / f"{split}.npy", _table(rng, n, 6))
    config = load_config(
        "configs/cnf_tabular.yaml",
        [f"task.data.path={tmp_path / 'data'}", "optim.batch_size=128", "optim.epochs=1"]
        + ["task.model.width=8", "train.progress=false", "train.predict_repeats=1"]
        + [f"output_dir={tmp_path / 'runs'}", "method=error"],
    )
    summary = train(config)
    assert summary["metric"] == "nll" and math.isfinite(summary["test_metric"])
    # A standard normal's NLL per sample in 6-D is about 8.5 nats.
    assert 5 < summary["test_metric"] < 15
    assert summary["figures"] == ["density.png"]
