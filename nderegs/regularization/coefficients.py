r"""Coefficients λ of the regularization terms: constant, scheduled, shared, or set by a
budget.

Every coefficient is pure: its state is a pytree (`init`), its value a JAX scalar
(`value(state, epoch)`), and `update(state, nfe=..., loss=...)` returns the next state.
`nderegs train` evaluates the values inside the compiled training step and calls
`update` once per epoch with the epoch's training solves.

The two budgets replace a hand-tuned λ by a constraint (Rezende & Viola 2018, GECO):

- `NFEBudget(target)`: minimise the task loss subject to NFE ≤ target, by dual ascent on
  log λ, `log λ ← log λ + rate·(mean log NFE − log target)`.
- `LossBudget(tolerance)`: minimise the regularizer subject to
  task loss ≤ reference + tolerance·|reference|, `log λ ← log λ − rate·clip(gap/(tolerance·|reference|), −1, 1)`.

Why one update per epoch: λ reaches the NFE only through the vector field, which
training moves over many steps. Updated every step from a smoothed NFE, λ runs ahead
of its effect and the controller oscillates around the target or collapses the task;
one update per epoch from the epoch's mean log-NFE waits for the field to answer.

References: Rezende & Viola, "Taming VAEs", 2018 (GECO); Platt & Barr, "Constrained
Differential Optimization", NeurIPS 1987.
"""

from __future__ import annotations

import abc
import math
from typing import Any

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike
import optax


class AbstractCoefficient(eqx.Module):
    """λ of one regularization term. `init()` gives its state (a pytree), `value(state,
    epoch)` its value (a JAX scalar; `epoch` is what a schedule counts) and
    `update(state, nfe=..., loss=...)` the state after one period of training (an
    epoch in `nderegs train`) whose training solves had the NFE `nfe` and task loss
    `loss` (scalars or arrays of per-step values)."""

    @abc.abstractmethod
    def init(self) -> Any:
        """The initial state."""

    @abc.abstractmethod
    def value(self, state: Any, epoch: ArrayLike) -> Array:
        """λ for `state` at `epoch`."""

    @abc.abstractmethod
    def update(
        self, state: Any, *, nfe: ArrayLike | None = None, loss: ArrayLike | None = None
    ) -> Any:
        """The state after a period of training."""


class Constant(AbstractCoefficient):
    """λ = `coefficient` throughout."""

    coefficient: float

    def init(self) -> tuple[()]:
        return ()

    def value(self, state, epoch) -> Array:
        return jnp.asarray(self.coefficient)  # weakly typed: the term's dtype decides

    def update(self, state, *, nfe=None, loss=None):
        return state


class Scheduled(AbstractCoefficient):
    """λ = `schedule(epoch)`, an optax schedule of the count `nderegs train` passes (the
    epoch, from 0); stateless, so it is evaluated inside the compiled step."""

    schedule: optax.Schedule

    def init(self) -> tuple[()]:
        return ()

    def value(self, state, epoch) -> Array:
        return jnp.asarray(self.schedule(epoch), jnp.float32)

    def update(self, state, *, nfe=None, loss=None):
        return state


class Shared(AbstractCoefficient):
    """λ = `ratio` × the coefficient of the term `term` of the same method (so a combined
    method, e.g. RNODE's two terms, follows one budget). Its value is resolved by
    `Regularization.coefficient_values`; stateless."""

    term: str
    ratio: float = 1.0

    def init(self) -> tuple[()]:
        return ()

    def value(self, state, epoch) -> Array:
        raise TypeError(
            f"A Shared coefficient takes its value from the term {self.term!r}: "
            "read it through Regularization.coefficient_values."
        )

    def update(self, state, *, nfe=None, loss=None):
        return state


class BudgetState(eqx.Module):
    """The state of a budget: log λ, the number of updates so far, the reference loss
    of a `LossBudget` (NaN until measured) and the last update's violation (NaN before
    the first)."""

    log_coefficient: Array
    updates: Array
    reference: Array
    violation: Array


def _check_positive(name: str, value: float, what: str) -> None:
    if isinstance(value, (int, float)) and not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number ({what}); got {value!r}.")


class AbstractBudget(AbstractCoefficient):
    r"""A coefficient set by a constraint, by multiplicative dual ascent on λ:
    `log λ ← clip(log λ + rate·c, log min, log max)`, c the constraint's violation
    measured by `violation` (positive: λ must rise). `coefficient(state)` is λ.

    The lag: λ acts on the measure only as training moves the vector field, epochs
    later. A pure integral controller keeps raising λ while the measure is already on
    its way, and overshoots (λ wound up far past the value that meets the budget, the
    task lost). So λ is only raised while the violation is not closing: when it shrank
    by more than `hold` since the last update, λ holds (lowering is never held;
    `hold=math.inf`: plain dual ascent). And λ never exceeds `upper` (an NFE budget's:
    10 × `initial`, as raised late, when the field has already grown stiff, λ no longer
    buys NFE but still costs the task: measured on digits, λ wound up to 5·10⁴ and the
    test accuracy fell to 32 %). Start high rather than low: a budget corrects a start
    that is too strong (λ falls while the budget is met), not one that is too weak."""

    initial: eqx.AbstractVar[float]
    rate: eqx.AbstractVar[float]
    hold: eqx.AbstractVar[float]
    minimum: eqx.AbstractVar[float]
    maximum: eqx.AbstractVar[float | None]

    def __check_init__(self):
        for name in ("initial", "rate", "minimum"):
            _check_positive(f"{type(self).__name__}.{name}", getattr(self, name), "λ is positive")
        if self.maximum is not None:
            _check_positive(f"{type(self).__name__}.maximum", self.maximum, "λ is positive")
        if isinstance(self.hold, (int, float)) and not self.hold >= 0:
            raise ValueError(f"{type(self).__name__}.hold must be ≥ 0; got {self.hold!r}.")
        if not self.minimum <= self.initial <= self.upper:
            raise ValueError(
                f"{type(self).__name__}: expected minimum ≤ initial ≤ maximum; got "
                f"{self.minimum} ≤ {self.initial} ≤ {self.upper}."
            )

    def init(self) -> BudgetState:
        return BudgetState(
            log_coefficient=jnp.asarray(math.log(self.initial), jnp.float32),
            updates=jnp.asarray(0, jnp.int32),
            reference=jnp.asarray(self.initial_reference(), jnp.float32),
            violation=jnp.asarray(jnp.nan, jnp.float32),
        )

    def coefficient(self, state: BudgetState) -> Array:
        """λ (a JAX scalar)."""
        return jnp.where(self.active(state), jnp.exp(state.log_coefficient), self.resting())

    def value(self, state: BudgetState, epoch) -> Array:
        return self.coefficient(state)

    def update(self, state: BudgetState, *, nfe=None, loss=None) -> BudgetState:
        violation, reference = self.violation(state, nfe=nfe, loss=loss)
        closing = violation < state.violation - self.hold  # False after NaN
        step = jnp.where(self.active(state), self.rate * violation, 0.0)
        step = jnp.where((step > 0) & closing, 0.0, step)
        log_coefficient = jnp.clip(
            state.log_coefficient + step, math.log(self.minimum), math.log(self.upper)
        )
        return BudgetState(
            log_coefficient=log_coefficient.astype(jnp.float32),
            updates=state.updates + 1,
            reference=reference,
            violation=jnp.where(self.active(state), violation, jnp.nan).astype(jnp.float32),
        )

    @property
    @abc.abstractmethod
    def upper(self) -> float:
        """The largest λ."""

    @abc.abstractmethod
    def resting(self) -> float:
        """λ while the constraint does not apply yet (see `active`)."""

    @abc.abstractmethod
    def initial_reference(self) -> float:
        """The state's reference before any update (NaN: none)."""

    @abc.abstractmethod
    def active(self, state: BudgetState) -> Array:
        """Whether the constraint applies (False during a warm-up, when λ rests)."""

    @abc.abstractmethod
    def violation(self, state: BudgetState, *, nfe, loss) -> tuple[Array, Array]:
        """(c, the reference after this update)."""


class NFEBudget(AbstractBudget):
    r"""Minimise the task loss subject to NFE ≤ `target`: the coefficient rises while the
    training solves take more than `target` function evaluations and falls while they
    take fewer,

    $$\log\lambda_{k+1} = \log\lambda_k + \eta\,\bigl(\overline{\log \mathrm{NFE}}_k - \log \mathrm{target}\bigr),$$

    with $\overline{\log \mathrm{NFE}}_k$ the mean log-NFE of the solves since the last
    update (GECO's multiplicative update of a Lagrange multiplier, Rezende & Viola 2018).
    A ratio: twice the target raises λ by √2 at η = 0.5.

    Arguments:
        target: the NFE per solve to stay under (> 0).
        initial: λ before the first update; start high rather than low.
        rate: η, the step of the dual ascent on log λ per update.
        hold: λ is not raised while the violation shrank by more than this.
        minimum, maximum: bounds of λ (maximum: by default 10 × initial).

    The NFE counted is that of the training solves; the NFE of another batch size
    differs only through the RMS norm over the batch (the step-size controller's), which
    averages over samples, so evaluation batches of the same distribution land close to
    the target (`experiments/results/budget` reports both).

    Example:
        ```python
        budget = nderegs.NFEBudget(target=40.0)
        state = budget.init()
        for epoch in range(epochs):
            lam = budget.coefficient(state)            # a JAX scalar, jit-safe
            nfes = [train_step(..., lam) for batch in batches]
            state = budget.update(state, nfe=jnp.asarray(nfes))
        ```
    """

    target: float
    initial: float = eqx.field(default=1.0, kw_only=True)
    rate: float = eqx.field(default=0.5, kw_only=True)
    hold: float = eqx.field(default=0.02, kw_only=True)
    minimum: float = eqx.field(default=1e-6, kw_only=True)
    maximum: float | None = eqx.field(default=None, kw_only=True)

    def __check_init__(self):
        _check_positive("NFEBudget.target", self.target, "a number of function evaluations")

    @property
    def upper(self) -> float:
        """`maximum`, by default 10 × `initial`."""
        return self.maximum if self.maximum is not None else 10.0 * self.initial

    def resting(self) -> float:
        return self.initial

    def initial_reference(self) -> float:
        return math.nan

    def active(self, state: BudgetState) -> Array:
        return jnp.asarray(True)

    def violation(self, state, *, nfe, loss):
        if nfe is None:
            raise ValueError("NFEBudget.update needs nfe=... (the training solves' NFE).")
        log_nfe = jnp.mean(jnp.log(jnp.maximum(jnp.asarray(nfe, jnp.float32), 1.0)))
        return log_nfe - math.log(self.target), state.reference


def _reference(value):
    # A sequence becomes a tuple of floats (hashable, static in the module).
    if value is None or isinstance(value, (int, float)):
        return value
    values = tuple(float(v) for v in value)
    if not values:
        raise ValueError("LossBudget.reference: an empty sequence; give at least one value.")
    return values


def _as_tuple(reference: float | tuple[float, ...]) -> tuple[float, ...]:
    return reference if isinstance(reference, tuple) else (reference,)


class LossBudget(AbstractBudget):
    r"""Minimise the regularizer subject to task loss ≤ (1 + `tolerance`)·reference
    (for a negative loss, reference + tolerance·|reference|): λ falls while the loss is
    above that bound and rises while it is below,

    $$\log\lambda_{k+1} = \log\lambda_k - \eta\,\mathrm{clip}\Bigl(\frac{\bar L_k - L_\text{ref} - \tau\,|L_\text{ref}|}{\tau\,|L_\text{ref}|}, -1, 1\Bigr),$$

    $\bar L_k$ the mean task loss since the last update. The reference is the task
    loss without regularization: a number, or a trajectory (one value per update, e.g.
    the per-epoch training loss of an unregularized run, compared epoch by epoch).

    The first `warmup` updates do not move λ. With a reference, λ = `initial` in them:
    the field takes its shape in the first epochs and λ reaches the NFE only through
    it, so a constraint judged from the first epoch lowers λ before it had an effect
    (early on, any regularized run trails the unregularized one); start high, let the
    field form, then let the loss decide. Without a reference, λ = 0 in them and the
    reference is the loss of the last of them (λ then acts only after the warm-up,
    when the field may have grown stiff: prefer a reference).

    Arguments:
        tolerance: τ ≥ 0, the relative loss allowed on top of the reference.
        reference: the unregularized task loss: a number, a sequence (update k uses
            element min(k, len − 1)), or None (measured in the warm-up).
        warmup: updates before the constraint applies; None: 0 with a reference, 1
            without.
        initial: λ during and right after the warm-up (with a reference), or when the
            constraint starts (without).
        rate: η, the largest step of log λ per update.
        hold: λ is not raised while the violation shrank by more than this.
        minimum, maximum: bounds of λ (maximum: by default none; the constraint keeps
            the task).

    Example:
        ```python
        budget = nderegs.LossBudget(tolerance=0.01, reference=0.05, warmup=5, initial=3.0)
        state = budget.init()
        for epoch in range(epochs):
            losses = [train_step(..., budget.coefficient(state)) for batch in batches]
            state = budget.update(state, loss=jnp.asarray(losses))
        ```
    """

    tolerance: float
    reference: float | tuple[float, ...] | None = eqx.field(default=None, converter=_reference)
    warmup: int | None = None
    initial: float = eqx.field(default=1.0, kw_only=True)
    rate: float = eqx.field(default=0.5, kw_only=True)
    hold: float = eqx.field(default=0.02, kw_only=True)
    minimum: float = eqx.field(default=1e-6, kw_only=True)
    maximum: float | None = eqx.field(default=None, kw_only=True)

    def __check_init__(self):
        if isinstance(self.tolerance, (int, float)) and not (
            math.isfinite(self.tolerance) and self.tolerance >= 0
        ):
            raise ValueError(
                f"LossBudget.tolerance must be ≥ 0 (the relative loss allowed on top of the "
                f"reference, e.g. 0.01); got {self.tolerance!r}."
            )
        if self.reference is not None and not all(
            isinstance(r, (int, float)) and math.isfinite(r) for r in _as_tuple(self.reference)
        ):
            raise ValueError(
                f"LossBudget.reference must be a finite number or a non-empty sequence of "
                f"them; got {self.reference!r}."
            )
        if self.warmup is not None and (not isinstance(self.warmup, int) or self.warmup < 0):
            raise ValueError(f"LossBudget.warmup must be an integer ≥ 0; got {self.warmup!r}.")
        if self.reference is None and self.warmup == 0:
            raise ValueError(
                "LossBudget needs a reference loss or a warm-up (warmup ≥ 1) to measure it."
            )

    @property
    def upper(self) -> float:
        """`maximum`, by default unbounded (1e30)."""
        return self.maximum if self.maximum is not None else 1e30

    @property
    def delay(self) -> int:
        """Updates before the constraint applies."""
        if self.warmup is not None:
            return self.warmup
        return 0 if self.reference is not None else 1

    def resting(self) -> float:
        return 0.0 if self.reference is None else self.initial

    def initial_reference(self) -> float:
        return math.nan if self.reference is None else _as_tuple(self.reference)[0]

    def active(self, state: BudgetState) -> Array:
        return state.updates >= self.delay

    def violation(self, state, *, nfe, loss):
        if loss is None:
            raise ValueError("LossBudget.update needs loss=... (the training steps' task loss).")
        mean_loss = jnp.mean(jnp.asarray(loss, jnp.float32))
        measuring = jnp.logical_not(self.active(state)) & (self.reference is None)
        if isinstance(self.reference, tuple):
            trajectory = jnp.asarray(self.reference, jnp.float32)
            reference = trajectory[jnp.minimum(state.updates, len(self.reference) - 1)]
        else:
            reference = jnp.where(measuring, mean_loss, state.reference)
        scale = self.tolerance * jnp.abs(reference)
        gap = mean_loss - (reference + scale)
        normalized = jnp.where(scale > 0, gap / jnp.where(scale > 0, scale, 1.0), jnp.sign(gap))
        return -jnp.clip(normalized, -1.0, 1.0), reference


__all__ = [
    "AbstractBudget",
    "AbstractCoefficient",
    "BudgetState",
    "Constant",
    "LossBudget",
    "NFEBudget",
    "Scheduled",
    "Shared",
]
