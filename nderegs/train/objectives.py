"""Which regularization terms a method adds to the task loss, and how to read them
off the `Heuristics` of a solve.

Method components (joined with '+'): the solver heuristics `error`, `stiffness`
(global), `local-error`, `local-error-biased`, `local-stiffness` (local), and the
baselines `taynode` (TayNODE's R_K), `rnode` (kinetic energy + Jacobian Frobenius
norm) and `steer` (random end time during training).
"""

from dataclasses import dataclass, field

import jax.numpy as jnp

from ..config import ExperimentConfig, ScheduleConfig
from ..core import AbstractIntegral, Heuristics, JacobianFrobenius, KineticEnergy, TaylorDerivative


# component -> (coefficient name in config.regularization, term of a solve)
_HEURISTIC_TERMS = {
    "error": ("error", lambda h: h.error),
    "stiffness": ("stiffness", lambda h: h.stiffness),
    "local-error": ("local_error", lambda h: h.local_error * h.local_weight),
    "local-error-biased": ("local_error", lambda h: h.local_error * h.local_weight),
    "local-stiffness": ("local_stiffness", lambda h: h.local_stiffness * h.local_weight),
}
_LOCAL = ("local-error", "local-error-biased", "local-stiffness")
# Local terms are scaled into unbiased estimates of the global ones (E[w·local] = R),
# so an unset local coefficient is the global one.
_GLOBAL_COEFFICIENT = {"local_error": "error", "local_stiffness": "stiffness"}


def _heuristic_coefficients(config: ExperimentConfig, components) -> dict[str, str]:
    names = {}
    for component in components & _HEURISTIC_TERMS.keys():
        name = _HEURISTIC_TERMS[component][0]
        if getattr(config.regularization, name) is None:
            name = _GLOBAL_COEFFICIENT[name]
        names[component] = name
    return names


@dataclass(frozen=True)
class IntegralTerm:
    """An integral regularizer: its coefficient's name and the integral."""

    coefficient: str
    integral: AbstractIntegral


def _integral_terms(config: ExperimentConfig, components) -> dict[str, IntegralTerm]:
    terms = {}
    if "taynode" in components:
        order = config.regularization.taynode_order
        terms["taynode"] = IntegralTerm("taynode", TaylorDerivative(order=order))
    if "rnode" in components:
        terms["rnode-kinetic"] = IntegralTerm("kinetic", KineticEnergy())
        terms["rnode-jacobian"] = IntegralTerm("jacobian", JacobianFrobenius())
    return terms


@dataclass(frozen=True)
class Objective:
    """The regularization of one method: the terms it adds, how the solve must be set
    up for them (`local`, `stiffness`, `integrals`, `steer`), and the coefficients."""

    components: frozenset[str]
    local: str | None
    stiffness: bool | None
    integral_terms: dict[str, IntegralTerm] = field(default_factory=dict)
    steer: float = 0.0
    #: heuristic component -> coefficient name in `config.regularization`.
    heuristic_coefficients: dict[str, str] = field(default_factory=dict)

    @property
    def integrals(self) -> tuple[AbstractIntegral, ...]:
        return tuple(t.integral for t in self.integral_terms.values())

    def coefficient_names(self) -> dict[str, str]:
        """term name -> coefficient name in `config.regularization`."""
        names = dict(self.heuristic_coefficients)
        names.update({name: t.coefficient for name, t in self.integral_terms.items()})
        return names

    def terms(self, h: Heuristics, batch_size: int) -> dict[str, jnp.ndarray]:
        """Each regularization term's value for a solve of a batch. The integrals sum
        over the batch solved as one system: divided by `batch_size` they are
        per-sample means."""
        values = {c: _HEURISTIC_TERMS[c][1](h) for c in self.components & _HEURISTIC_TERMS.keys()}
        for i, name in enumerate(self.integral_terms):
            values[name] = h.integrals[i] / batch_size
        return dict(sorted(values.items()))


def make_objective(config: ExperimentConfig) -> Objective:
    components = frozenset(config.components) - {"vanilla"}
    local = config.local_sampling_effective if components & set(_LOCAL) else None
    needs_stiffness = bool(components & {"stiffness", "local-stiffness"})
    steer = 0.0
    if "steer" in components:
        steer = config.regularization.steer_b
        span = abs(config.solver.t1 - config.solver.t0)
        if config.task != "classifier":
            raise ValueError(
                "method component 'steer' changes the end time of the solve, which only "
                "applies to the classifier task (the latent ODE must reach its data times)."
            )
        if not 0 < steer < span:
            raise ValueError(
                f"method 'steer' needs 0 < regularization.steer_b < |solver.t1 - "
                f"solver.t0| = {span}; got {steer}."
            )
    return Objective(
        components=components,
        local=local,
        stiffness=True if needs_stiffness else None,
        integral_terms=_integral_terms(config, components),
        steer=steer,
        heuristic_coefficients=_heuristic_coefficients(config, components),
    )
