"""Flow matching (its loss against a Gaussian path with a known optimal field, the OT
coupling against a known plan), the sampling solve, the sample metric, the 64-D digits
density and starting a run from another run's weights."""

from collections import OrderedDict
import itertools
import json
import math

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm
import sklearn.datasets
from tiny import TINY_CNF

import nderegs
from nderegs.config import ConfigError, load_config
from nderegs.data import load_digits_density
from nderegs.layers.flow_matching import flow_matching_loss, ot_pairing
from nderegs.models import ConcatSquashMLP
from nderegs.tasks.density import energy_distance
from nderegs.train import compiled_steps, load_run, RunDirectory, train


@pytest.fixture
def float64():
    with jax.enable_x64(True):
        yield


# Data N(μ, σ²) at t0 = 0, the base N(0, 1) at t1 = 1, paired independently: the path
# x_s = (1 − s) x + s z has the marginal velocity E[z − x | x_s] in closed form.
MU, SIGMA = 1.5, 0.5


def _optimal_field(t, x, args=None):
    variance = (1 - t) ** 2 * SIGMA**2 + t**2
    covariance = t - (1 - t) * SIGMA**2
    return -MU + covariance / variance * (x - (1 - t) * MU)


def _irreducible_loss() -> float:
    """E over s ~ U(0, 1) of Var(z − x | x_s): the flow-matching loss of the optimal
    field (midpoint rule on a fine grid)."""
    s = (np.arange(100_000) + 0.5) / 100_000
    variance = (1 - s) ** 2 * SIGMA**2 + s**2
    covariance = s - (1 - s) * SIGMA**2
    return float(np.mean(1 + SIGMA**2 - covariance**2 / variance))


@pytest.mark.usefixtures("float64")
def test_flow_matching_loss_of_the_optimal_field_is_the_paths_own_variance():
    optimal = nderegs.CNF(_optimal_field, dim=1)
    x = MU + SIGMA * jax.random.normal(jax.random.key(0), (400_000, 1), jnp.float64)
    key = jax.random.key(1)
    loss = float(flow_matching_loss(optimal, x, key))
    assert loss == pytest.approx(_irreducible_loss(), rel=5e-3)
    # Any other field costs its mean squared distance to the optimal one on top.
    shifted = nderegs.CNF(lambda t, x, a: _optimal_field(t, x) + 0.3, dim=1)
    assert float(flow_matching_loss(shifted, x, key)) - loss == pytest.approx(0.09, abs=5e-3)
    # The loss is in the layer's own time: on [0, 2] the velocities halve.
    slow = nderegs.CNF(lambda t, x, a: _optimal_field(t / 2, x) / 2, dim=1, t1=2.0)
    assert float(flow_matching_loss(slow, x, key)) == pytest.approx(loss / 4, rel=1e-9)


def test_ot_coupling_finds_the_permutation_that_is_the_plan():
    x = jax.random.normal(jax.random.key(0), (24, 2))
    permutation = jax.random.permutation(jax.random.key(1), 24)
    z = x[permutation] + 1e-3 * jax.random.normal(jax.random.key(2), (24, 2))
    np.testing.assert_array_equal(ot_pairing(x, z), z[jnp.argsort(permutation)])
    # The cheapest of all 720 pairings of 6 points, by brute force.
    x, z = (jax.random.normal(jax.random.key(k), (6, 3)) for k in (3, 4))
    cost = lambda paired: float(jnp.sum((x - paired) ** 2))
    best = min(cost(z[np.array(order)]) for order in itertools.permutations(range(6)))
    assert cost(ot_pairing(x, z)) == pytest.approx(best, rel=1e-6)
    # Under vmap, each batch is paired on its own.
    batched = jax.vmap(ot_pairing)(jnp.stack([x, z]), jnp.stack([z, x]))
    np.testing.assert_array_equal(batched[0], ot_pairing(x, z))
    # The independent coupling leaves the draws as they are; OT moves them closer.
    field = ConcatSquashMLP(2, 8, 1, key=jax.random.key(4))
    cnf = nderegs.CNF(field, dim=2)
    x = jax.random.normal(jax.random.key(0), (24, 2))
    independent = flow_matching_loss(cnf, x, jax.random.key(5))
    ot = flow_matching_loss(cnf, x, jax.random.key(5), coupling="ot")
    assert float(ot) < float(independent)
    with pytest.raises(ValueError, match="coupling must be one of independent, ot"):
        flow_matching_loss(cnf, x, jax.random.key(5), coupling="sinkhorn")  # pyright: ignore[reportArgumentType]


@pytest.mark.bit_identical
@pytest.mark.usefixtures("float64")
def test_the_sampling_solve_is_diffeqsolve_of_the_flow_alone():
    field = ConcatSquashMLP(2, 8, 1, key=jax.random.key(0))
    cnf = nderegs.CNF(field, dim=2, rtol=1e-6, atol=1e-6)
    base = jax.random.normal(jax.random.key(1), (16, 2), jnp.float64)
    samples, h = cnf.transport(base, reverse=True)
    reference = diffrax.diffeqsolve(
        diffrax.ODETerm(lambda t, z, args: jax.vmap(field, in_axes=(None, 0))(t, z)),
        diffrax.Tsit5(),
        1.0,
        0.0,
        None,
        base,
        stepsize_controller=diffrax.PIDController(rtol=1e-6, atol=1e-6),
    )
    assert reference.ys is not None
    np.testing.assert_array_equal(samples, reference.ys[0])
    assert int(h.num_steps) == int(reference.stats["num_steps"])
    back, _ = cnf.transport(samples)  # data → base undoes it
    np.testing.assert_allclose(back, base, atol=1e-5)


def test_energy_distance_of_two_gaussians_matches_its_closed_form():
    # X ~ N(0, 1), Y ~ N(m, 1) in 1-D: E|X − Y| = E|N(−m, 2)|, E|X − X'| = 2/√π.
    m, n = 1.0, 3000
    x = jax.random.normal(jax.random.key(0), (n, 1))
    y = m + jax.random.normal(jax.random.key(1), (n, 1))
    s = math.sqrt(2)
    cross = s * math.sqrt(2 / math.pi) * math.exp(-(m**2) / 4) + m * (1 - 2 * norm.cdf(-m / s))
    expected = 2 * cross - 2 * (2 / math.sqrt(math.pi))
    assert float(energy_distance(x, y)) == pytest.approx(expected, abs=0.03)
    # Exactly, on two points each: the cross term over all pairs, the within terms over
    # distinct pairs (2·1 − 1 − 2; with the diagonal's zeros counted it would be +0.5).
    a, b = jnp.array([[0.0], [1.0]]), jnp.array([[0.0], [2.0]])
    assert float(energy_distance(a, b)) == pytest.approx(-1.0)


def test_digits_as_a_64_dimensional_density():
    data = load_digits_density(seed=3)
    assert data.x_train.shape == (1438, 64) and data.x_test.shape == (359, 64)
    np.testing.assert_allclose(data.x_train.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(data.x_train.std(0), 1, atol=1e-4)
    again = load_digits_density(seed=3)
    np.testing.assert_array_equal(again.x_test, data.x_test)
    assert not np.array_equal(load_digits_density(seed=4).x_test, data.x_test)
    # The offset is Σ log s_d of the dequantized pixels: about Σ ½ log(Var(pixel) + 1/12),
    # the uniform noise independent of the pixel (the split's own variance differs a bit).
    pixels = sklearn.datasets.load_digits().data  # pyright: ignore[reportAttributeAccessIssue]
    expected = float(np.sum(0.5 * np.log(pixels.var(0) + 1 / 12)))
    assert data.nll_offset == pytest.approx(expected, abs=1.0)


TINY_FLOW = [*TINY_CNF, "task.training=flow_matching"]


def test_a_flow_matching_run_fine_tuned_from_its_weights(tmp_path, monkeypatch):
    """Flow matching (OT-paired, through the compiled step) trains without a solve; a new
    run starts from its exact weights and fine-tunes it with the error regularizer of its
    sampling solve."""
    config = load_config("configs/cnf_2d.yaml", [*TINY_FLOW, "task.coupling=ot"])
    source = tmp_path / "fm"
    summary = train(config, run_dir=source)
    assert summary is not None
    assert math.isfinite(summary["test_metric"]) and summary["sample_nfe"] > 0
    assert math.isfinite(summary["sample_energy_distance"])
    assert summary["test_nll_per_dim"] == pytest.approx(summary["test_metric"] / 2)
    (row,) = RunDirectory(source).read_metrics()
    assert row["train_nll"] is None and row["train_nfe"] is None  # no solve in training

    # Stopped where compilation would start, the new run holds the weights it starts from.
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    fine_tune = load_config("configs/cnf_2d.yaml", [*TINY_FLOW, "task.coupling=ot", "method=error"])
    with monkeypatch.context() as patch:
        patch.setattr("nderegs.train.loop.compile_step", interrupted)
        patch.setattr(compiled_steps, "_shared", OrderedDict())
        with pytest.raises(KeyboardInterrupt):
            train(fine_tune, run_dir=tmp_path / "start", init_from=source)
    trained, _, _ = load_run(source)
    started, _, epoch = load_run(tmp_path / "start")
    assert epoch == 0
    for a, b in zip(
        *(jax.tree_util.tree_leaves(eqx.filter(m, eqx.is_array)) for m in (trained, started))
    ):
        np.testing.assert_array_equal(a, b)
    tuned = train(fine_tune, run_dir=tmp_path / "tuned", init_from=source)
    assert tuned is not None and tuned["init_from"] == {"run": str(source), "epoch": 1}
    (row,) = RunDirectory(tmp_path / "tuned").read_metrics()
    assert row["train_nfe"] > 0 and row["train_nll"] is None  # the sampling solve's NFE
    assert json.loads((tmp_path / "tuned" / "summary.json").read_text())["init_from"]

    # A model of another shape, a directory that is no run, and resuming: clear errors.
    wider = load_config("configs/cnf_2d.yaml", [*TINY_FLOW, "task.model.width=16"])
    with pytest.raises(
        ConfigError,
        match=r"(?s)shape \(.*8.*\) there and \(.*16.*\) here.*task.model.width: 8 -> 16",
    ):
        train(wider, run_dir=tmp_path / "wider", init_from=source)
    other_seed = load_config("configs/cnf_2d.yaml", [*TINY_FLOW, "seed=5"])
    with pytest.raises(ConfigError, match=r"trained on other data \(seed: 0 -> 5\)"):
        train(other_seed, run_dir=tmp_path / "other", init_from=source)
    with pytest.raises(ConfigError, match="not a run directory with a checkpoint"):
        train(config, run_dir=tmp_path / "none", init_from=tmp_path)
    with pytest.raises(ConfigError, match="drop one of --resume and --init-from"):
        train(config, run_dir=source, resume=True, init_from=source)


def test_flow_matching_settings_are_checked():
    with pytest.raises(ConfigError, match="task.coupling.*training=flow_matching only"):
        load_config("configs/cnf_2d.yaml", ["task.coupling=ot"])
    with pytest.raises(
        ConfigError, match="task.training.*must be .maximum_likelihood. or .flow_matching."
    ):
        load_config("configs/cnf_2d.yaml", ["task.training=score_matching"])
    flow_matching = ["task.training=flow_matching"]
    with pytest.raises(ConfigError, match="'method': 'steer'.*no training trajectory"):
        load_config("configs/cnf_2d.yaml", [*flow_matching, "method=steer"])
    budget = "regularization.error={kind: loss_budget, tolerance: 0.01, constrain: metric}"
    with pytest.raises(ConfigError, match="constrain': 'metric'.*computes no likelihood"):
        load_config("configs/cnf_2d.yaml", [*flow_matching, "method=error", budget])
    load_config(
        "configs/cnf_2d.yaml",
        [*flow_matching, "method=error", budget.replace("metric", "task_loss")],
    )
