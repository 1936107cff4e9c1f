"""Coefficients set by a budget (`NFEBudget`, `LossBudget`), shared and scheduled
coefficients: the update rules against hand-computed sequences, jit/vmap, checkpoints,
configs and their errors."""

import json
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import nderegs
from nderegs.config import ConfigError, load_config
from nderegs.regularization import (
    BudgetState,
    Constant,
    GlobalError,
    GlobalStiffness,
    LossBudget,
    NFEBudget,
    Regularization,
    RNODE,
    Scheduled,
    Shared,
)
from nderegs.train import RunDirectory


def _lambda(budget, state) -> float:
    return float(budget.coefficient(state))


# --------------------------------------------------------------------------- #
# The update rules, against sequences computed by hand (float64 reference)
# --------------------------------------------------------------------------- #


def test_nfe_budget_follows_the_geometric_mean_nfe():
    budget = nderegs.NFEBudget(target=40.0, initial=2.0, rate=0.5)
    state = budget.init()
    assert _lambda(budget, state) == pytest.approx(2.0)
    expected = 2.0
    # log λ += 0.5·(mean log NFE − log 40), one update per epoch of solves.
    for nfes in ([80, 80], [20, 80], [40], [10, 20, 40]):
        state = budget.update(state, nfe=jnp.asarray(nfes))
        expected *= math.exp(0.5 * (np.mean(np.log(nfes)) - math.log(40.0)))
        assert _lambda(budget, state) == pytest.approx(expected, rel=1e-6)
    assert int(state.updates) == 4


def test_a_budget_rises_at_most_tenfold_by_default():
    # Raised late, λ no longer buys NFE but still costs the task: by default a budget
    # stays below 10 × its initial value.
    budget = NFEBudget(target=10.0, initial=0.5)
    state = budget.init()
    for _ in range(20):
        state = budget.update(state, nfe=1000.0)
    assert _lambda(budget, state) == pytest.approx(5.0, rel=1e-6)
    assert budget.upper == 5.0 and NFEBudget(target=10.0, maximum=1e3).upper == 1e3


def test_nfe_budget_stays_within_its_bounds():
    budget = NFEBudget(target=10.0, initial=1.0, rate=5.0, minimum=0.5, maximum=4.0)
    state = budget.init()
    for _ in range(3):
        state = budget.update(state, nfe=1000.0)
    assert _lambda(budget, state) == pytest.approx(4.0)
    for _ in range(3):
        state = budget.update(state, nfe=1.0)
    assert _lambda(budget, state) == pytest.approx(0.5)


def test_loss_budget_warms_up_at_zero_then_constrains():
    budget = LossBudget(tolerance=0.1, warmup=2, initial=0.5, rate=1.0)
    state = budget.init()
    lambdas = [_lambda(budget, state)]
    # Two warm-up updates at λ = 0; the reference is the last one's mean loss (1.0).
    for losses in ([3.0, 1.0], [1.5, 0.5]):
        state = budget.update(state, loss=jnp.asarray(losses))
        lambdas.append(_lambda(budget, state))
    assert float(state.reference) == 1.0
    # Bound 1.1, scale 0.1: loss 1.05 → gap −0.05 → λ·e^0.5; 1.5 → gap 4 (clipped to
    # 1) → λ·e^−1; 1.1 exactly → unchanged.
    for loss in (1.05, 1.5, 1.1):
        state = budget.update(state, loss=loss)
        lambdas.append(_lambda(budget, state))
    expected = [0.0, 0.0, 0.5, 0.5 * math.exp(0.5), 0.5 * math.exp(-0.5), 0.5 * math.exp(-0.5)]
    np.testing.assert_allclose(lambdas, expected, rtol=1e-6)
    assert float(state.reference) == 1.0  # measured once, then kept


def test_loss_budget_with_a_negative_reference_and_a_zero_tolerance():
    # A negative loss (an NLL): the bound is reference + tolerance·|reference|.
    budget = LossBudget(tolerance=0.1, reference=-2.0, initial=1.0, rate=1.0)
    state = budget.init()
    assert _lambda(budget, state) == 1.0  # a given reference: no warm-up
    state = budget.update(state, loss=-1.9)  # bound −1.8, scale 0.2: gap −0.1 → e^0.5
    assert _lambda(budget, state) == pytest.approx(math.exp(0.5), rel=1e-6)
    # Tolerance 0: λ moves by the full rate, in the direction of the gap's sign.
    strict = LossBudget(tolerance=0.0, reference=1.0, initial=1.0, rate=0.25)
    state = strict.update(strict.init(), loss=1.01)
    assert _lambda(strict, state) == pytest.approx(math.exp(-0.25), rel=1e-6)
    state = strict.update(state, loss=0.5)
    assert _lambda(strict, state) == pytest.approx(1.0, rel=1e-6)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: NFEBudget(target=0.0), "NFEBudget.target must be a positive number"),
        (lambda: NFEBudget(target=-5), "NFEBudget.target must be a positive number"),
        (lambda: NFEBudget(target=40, initial=0.0), "NFEBudget.initial must be a positive"),
        (lambda: NFEBudget(target=40, minimum=2.0), "minimum ≤ initial ≤ maximum"),
        (lambda: NFEBudget(target=40, initial=2.0, maximum=1.0), "minimum ≤ initial ≤ maximum"),
        (lambda: NFEBudget(target=40, hold=-1.0), "hold must be ≥ 0"),
        (lambda: LossBudget(tolerance=-0.01), "LossBudget.tolerance must be ≥ 0"),
        (lambda: LossBudget(tolerance=0.01, warmup=0), "needs a reference loss or a warm-up"),
        (
            lambda: LossBudget(tolerance=0.01, reference=math.inf),
            "reference must be a finite number or a non-empty sequence",
        ),
        (lambda: LossBudget(tolerance=0.01, reference=[]), "reference: an empty sequence"),
    ],
)
def test_bad_budgets_are_clear_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_an_update_without_its_measure_is_a_clear_error():
    with pytest.raises(ValueError, match="needs nfe="):
        NFEBudget(target=40).update(NFEBudget(target=40).init(), loss=1.0)
    with pytest.raises(ValueError, match="needs loss="):
        LossBudget(tolerance=0.1).update(LossBudget(tolerance=0.1).init(), nfe=10)


# --------------------------------------------------------------------------- #
# jit, vmap, checkpoints
# --------------------------------------------------------------------------- #


@pytest.mark.bit_identical
def test_budgets_under_jit_and_vmap_equal_eager():
    budget = NFEBudget(target=40.0, rate=0.7)
    nfes = jnp.asarray([[55.0, 61.0], [30.0, 31.0], [40.0, 90.0]])
    eager = [budget.update(budget.init(), nfe=n) for n in nfes]
    jitted = jax.jit(lambda s, n: budget.update(s, nfe=n))
    states = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *[budget.init()] * 3)
    vmapped = jax.vmap(lambda s, n: budget.update(s, nfe=n))(states, nfes)
    for i, state in enumerate(eager):
        assert jnp.array_equal(
            jitted(budget.init(), nfes[i]).log_coefficient, state.log_coefficient
        )
        assert jnp.array_equal(vmapped.log_coefficient[i], state.log_coefficient)
    lam = jax.jit(budget.coefficient)(eager[0])
    assert lam.shape == () and lam == budget.coefficient(eager[0])
    # A loss budget's warm-up branch is traced too (no Python control flow on state).
    loss_budget = LossBudget(tolerance=0.05, warmup=1)
    stepped = jax.jit(lambda s, x: loss_budget.update(s, loss=x))
    state = stepped(stepped(loss_budget.init(), 2.0), 1.0)
    assert float(state.reference) == 2.0 and _lambda(loss_budget, state) > 1.0


def test_budget_state_checkpoints_bit_exactly(tmp_path):
    budget = LossBudget(tolerance=0.01, warmup=1, initial=0.3)
    state = budget.update(budget.update(budget.init(), loss=1.234567), loss=1.2)
    method = Regularization(
        (GlobalError(coefficient=budget), GlobalStiffness(coefficient=Shared("error", 0.5)))
    )
    states = {**method.init_coefficients(), "error": state}
    run = RunDirectory(tmp_path)
    model = eqx.nn.Linear(2, 2, key=jax.random.key(0))
    run.save_checkpoint(model, (), 3, {}, states)
    _, _, epoch, _, loaded = run.load_checkpoint(model, (), method.init_coefficients())
    assert epoch == 3
    for a, b in zip(jax.tree_util.tree_leaves(states), jax.tree_util.tree_leaves(loaded)):
        assert a.dtype == b.dtype and np.asarray(a).tobytes() == np.asarray(b).tobytes()
    assert isinstance(loaded["error"], BudgetState)


def test_shared_and_scheduled_coefficients():
    schedule = optax.exponential_decay(1.0, transition_steps=1, decay_rate=0.5, staircase=True)
    method = Regularization(
        (RNODE(kinetic=Scheduled(schedule), jacobian=Shared("rnode-kinetic", ratio=0.1)),)
    )
    states = method.init_coefficients()
    values = method.coefficient_values(states, jnp.asarray(2, jnp.int32))
    assert float(values["rnode-kinetic"]) == 0.25
    assert float(values["rnode-jacobian"]) == pytest.approx(0.025)
    with pytest.raises(ValueError, match="shared with term 'error'.*accepted: rnode-kinetic"):
        Regularization((RNODE(kinetic=Constant(1.0), jacobian=Shared("error")),))
    with pytest.raises(TypeError, match="A coefficient is a number or an nderegs coefficient"):
        GlobalError(coefficient="0.1")  # pyright: ignore[reportArgumentType]


def test_the_exponential_anneal_gives_the_numbers_it_gave_per_step():
    # Before coefficients had states, the loop evaluated optax's per-step staircase on
    # the host; now the per-epoch schedule is evaluated inside the step. Same floats.
    config = load_config(
        None, ["method=error", "regularization.error={kind: exponential, start: 3, end: 0.01}"]
    )
    epochs, steps_per_epoch = config.optim.epochs, 7
    method = config.method_regularization()
    rate = math.exp(math.log(0.01 / 3) / (epochs - 1))
    per_step = optax.exponential_decay(3.0, steps_per_epoch, rate, staircase=True)
    value = jax.jit(lambda e: method.coefficient_values({"error": ()}, e)["error"])
    for epoch in range(epochs):
        old = jnp.asarray(per_step(epoch * steps_per_epoch + 3), jnp.float32)
        assert (
            np.asarray(value(jnp.asarray(epoch, jnp.int32))).tobytes() == np.asarray(old).tobytes()
        )


# --------------------------------------------------------------------------- #
# Configs
# --------------------------------------------------------------------------- #


def test_every_coefficient_of_every_method_takes_a_budget():
    for field, method in [
        ("error", "error"),
        ("stiffness", "stiffness"),
        ("error", "local-error"),
        ("local_error", "local-error-biased"),
        ("local_stiffness", "local-stiffness"),
        ("taynode", "taynode"),
        ("kinetic", "rnode"),
        ("jacobian", "rnode"),
    ]:
        config = load_config(
            None,
            [f"method={method}", f"regularization.{field}={{kind: nfe_budget, target: 40}}"],
        )
        config.check_trains_something()
        budgets = [
            c
            for c in config.method_regularization().coefficients().values()
            if isinstance(c, NFEBudget)
        ]
        assert len(budgets) == 1 and budgets[0].target == 40.0, (field, method)


def test_budget_configs_build_with_the_terms_usual_scale():
    config = load_config(
        None,
        [
            "method=error+stiffness",
            "regularization.error={kind: loss_budget, tolerance: 0.01, constrain: metric}",
            "regularization.stiffness={kind: shared, of: error, ratio: 0.01}",
            "optim.epochs=10",
        ],
    )
    error = config.method_regularization().coefficients()["error"]
    assert isinstance(error, LossBudget)
    assert (error.warmup, error.initial, error.tolerance) == (5, 0.1, 0.01)
    assert config.loss_budget_measure() == "metric"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["regularization.error={kind: nfe_budget, target: 0}"],
            r"regularization.error.target.: 0 \(must be greater than 0\)",
        ),
        (
            ["regularization.error={kind: loss_budget, tolerance: -0.1}"],
            r"regularization.error.tolerance.: -0.1 \(must be greater than or equal to 0\)",
        ),
        (
            ["method=rnode", "regularization.jacobian={kind: shared, of: kinetic}"],
            "'regularization.jacobian.of': 'kinetic'.*accepted: rnode-kinetic",
        ),
    ],
)
def test_bad_budget_configs_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(
            None, ["method=error", *overrides] if "method" not in str(overrides) else overrides
        )


def test_a_budget_on_vanilla_or_an_unused_coefficient_is_refused_at_the_start():
    config = load_config(
        None, ["method=vanilla", "regularization.error={kind: nfe_budget, target: 40}"]
    )
    with pytest.raises(
        ConfigError, match="regularization.error.kind.*budget on vanilla has nothing to set"
    ):
        config.check_trains_something()
    config = load_config(
        None, ["method=stiffness", "regularization.error={kind: loss_budget, tolerance: 0.01}"]
    )
    with pytest.raises(ConfigError, match="no term weighed by regularization.error"):
        config.check_trains_something()


# Training with a budget, resumed exactly: tests/test_train.py::test_resume_equals_uninterrupted.


def test_a_budget_holds_lambda_while_the_violation_closes():
    # The lag: λ acts through training, epochs later. While the NFE is still above the
    # target but falling by more than `hold` (in log-NFE), λ is not raised further;
    # lowering is never held.
    budget = NFEBudget(target=40.0, initial=1.0, rate=1.0, hold=0.02)
    state = budget.update(budget.init(), nfe=80.0)  # violation log 2: raised
    assert _lambda(budget, state) == pytest.approx(2.0, rel=1e-6)
    state = budget.update(state, nfe=60.0)  # above, but closing: held
    assert _lambda(budget, state) == pytest.approx(2.0, rel=1e-6)
    state = budget.update(state, nfe=60.0)  # above and not closing: raised
    assert _lambda(budget, state) == pytest.approx(3.0, rel=1e-6)
    state = budget.update(state, nfe=30.0)  # below: lowered
    assert _lambda(budget, state) == pytest.approx(2.25, rel=1e-6)
    free = NFEBudget(target=40.0, rate=1.0, hold=math.inf)  # never holds: plain dual ascent
    state = free.update(free.update(free.init(), nfe=80.0), nfe=60.0)
    assert _lambda(free, state) == pytest.approx(3.0, rel=1e-6)


def test_a_loss_budget_with_a_reference_rests_at_its_initial_value_in_the_warm_up():
    # With a reference, the warm-up lets the field take shape at λ = initial; then the
    # constraint decides (here: the loss is far above the bound, so λ falls).
    budget = LossBudget(tolerance=0.01, reference=[2.0, 1.0, 0.5], warmup=2, initial=3.0)
    state = budget.init()
    lambdas = [_lambda(budget, state)]
    for _ in range(4):
        state = budget.update(state, loss=10.0)
        lambdas.append(_lambda(budget, state))
    # Updates 0 and 1 are the warm-up; update 2 compares with reference[2] = 0.5 and
    # update 3 with reference[2] again (the trajectory's last value): each e^−0.5.
    np.testing.assert_allclose(
        lambdas, [3.0, 3.0, 3.0, 3.0 * math.exp(-0.5), 3.0 * math.exp(-1.0)], rtol=1e-6
    )
    assert float(state.reference) == 0.5
    assert budget.upper == 1e30  # no cap: the constraint keeps the task


def test_a_loss_budget_reads_its_reference_from_a_run_directory(tmp_path):
    # The vanilla run's per-epoch training accuracy (evaluated every other epoch),
    # negated (lower is better), epochs between interpolated; {seed} is the seed.
    run = tmp_path / "vanilla-seed3"
    run.mkdir()
    rows = [{"epoch": 2, "train_accuracy": 0.5}, {"epoch": 4, "train_accuracy": 0.9}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "summary.json").write_text("{}")  # finished
    budget = f"{{kind: loss_budget, tolerance: 0.01, constrain: metric, reference: '{tmp_path}/vanilla-seed{{seed}}'}}"
    config = load_config(None, ["method=error", "seed=3", f"regularization.error={budget}"])
    error = config.method_regularization().coefficients()["error"]
    assert isinstance(error, LossBudget)
    np.testing.assert_allclose(error.reference, [-0.5, -0.5, -0.7, -0.9])
    other_seed = load_config(None, ["method=error", "seed=4", f"regularization.error={budget}"])
    with pytest.raises(ConfigError, match=r"regularization.error.reference.*not a finished run"):
        other_seed.method_regularization()


def test_compare_reports_the_coefficients_a_budget_reached(tmp_path):
    from nderegs.report import ComparisonResult, RunResult
    from nderegs.report.plots import plot_coefficients_over_training
    from nderegs.report.table import coefficients_table

    def run(method, seed, by_epoch):
        coefficients = {
            "error": {"final": by_epoch[-1], "mean": float(np.mean(by_epoch)), "by_epoch": by_epoch}
        }
        summary = {"metric": "accuracy", "coefficients": coefficients}
        return RunResult(method, seed, tmp_path / f"{method}{seed}", "trained", summary)

    budgeted = [run("error", 0, [0.1, 0.2, 0.4]), run("error", 1, [0.1, 0.3, 0.5])]
    constant = [run("stiffness", 0, [0.01, 0.01, 0.01])]
    result = ComparisonResult(("error", "stiffness"), (0, 1), tmp_path, tuple(budgeted + constant))
    table = coefficients_table(result)
    assert "| `error` | error | 0.450 ± 0.071 | 0.267 ± 0.047 |" in table
    assert "stiffness" not in table  # a constant coefficient did not move
    assert plot_coefficients_over_training(result, tmp_path / "λ.png") == tmp_path / "λ.png"
    assert (tmp_path / "λ.png").stat().st_size > 0
    only_constant = ComparisonResult(("stiffness",), (0,), tmp_path, tuple(constant))
    assert coefficients_table(only_constant) == ""
    assert plot_coefficients_over_training(only_constant, tmp_path / "none.png") is None


def test_a_numeric_reference_of_an_accuracy_is_compared_as_the_budget_compares_it():
    # The training accuracy enters the budget negated (lower is better); so must a
    # reference given as a number.
    budget = "{kind: loss_budget, tolerance: 0.01, constrain: metric, reference: 0.95, warmup: 0}"
    config = load_config(None, ["method=error", f"regularization.error={budget}"])
    error = config.method_regularization().coefficients()["error"]
    assert isinstance(error, LossBudget) and error.reference == -0.95
    state = error.update(error.init(), loss=-0.90)  # accuracy 0.90 < 0.95·0.99: λ falls
    assert _lambda(error, state) < error.initial


def test_budget_config_errors_name_their_key(tmp_path):
    with pytest.raises(
        ConfigError, match=r"'regularization.jacobian.of': 'kinetic'.*rnode-kinetic"
    ):
        load_config(None, ["method=rnode", "regularization.jacobian={kind: shared, of: kinetic}"])
    too_low = "{kind: nfe_budget, target: 40, initial: 2, maximum: 1}"
    with pytest.raises(ConfigError, match=r"'regularization.error'.*minimum ≤ initial ≤ maximum"):
        load_config(None, ["method=error", f"regularization.error={too_low}"])
    # Covering every epoch, the warm-up would leave λ where it rests: refused at the start.
    config = load_config(
        None,
        [
            "method=error",
            "optim.epochs=2",
            "regularization.error={kind: loss_budget, tolerance: 0.01, warmup: 2}",
        ],
    )
    with pytest.raises(ConfigError, match=r"regularization.error.warmup.*covers all 2 epochs"):
        config.check_trains_something()
    # A reference run is read when training starts, not when a config loads: a finished
    # budgeted run stays loadable after its reference moved.
    missing = f"{{kind: loss_budget, tolerance: 0.01, reference: '{tmp_path}/gone-{{seed}}'}}"
    config = load_config(None, ["method=error", f"regularization.error={missing}"])
    with pytest.raises(ConfigError, match=r"'regularization.error.reference'.*not a finished run"):
        config.check_trains_something()
    with pytest.raises(ConfigError, match=r"only \{seed\} may stand in the path"):
        load_config(
            None,
            [
                "method=error",
                "regularization.error={kind: loss_budget, tolerance: 0.01, reference: 'a{x}'}",
            ],
        ).method_regularization()
