"""Which regularization terms a method adds to the task loss, and how to read them
off the `Heuristics` of a solve."""

from dataclasses import dataclass

import jax.numpy as jnp

from ..config import ExperimentConfig, ScheduleConfig
from ..core import Heuristics


# method component -> (coefficient name in config.regularization, term of a solve)
_HEURISTIC_TERMS = {
    "error": ("error", lambda h: h.error),
    "stiffness": ("stiffness", lambda h: h.stiffness),
    # Local terms are scaled into unbiased estimates of the global ones
    # (E[w·local] = R), so one coefficient means the same for both.
    "local-error": ("error", lambda h: h.local_error * h.local_weight),
    "local-error-biased": ("error", lambda h: h.local_error * h.local_weight),
    "local-stiffness": ("stiffness", lambda h: h.local_stiffness * h.local_weight),
}
_NOT_YET = ("steer", "taynode", "rnode")


@dataclass(frozen=True)
class Objective:
    """The regularization of one method: the terms it adds, how the solve must be set
    up for them (`local`, `stiffness`), and the schedule of each coefficient."""

    components: frozenset[str]
    local: str | None
    stiffness: bool | None
    schedules: dict[str, ScheduleConfig]

    def terms(self, h: Heuristics) -> dict[str, jnp.ndarray]:
        return {c: _HEURISTIC_TERMS[c][1](h) for c in sorted(self.components & _HEURISTIC_TERMS.keys())}

    def coefficient_names(self) -> dict[str, str]:
        return {c: _HEURISTIC_TERMS[c][0] for c in self.components & _HEURISTIC_TERMS.keys()}


def make_objective(config: ExperimentConfig) -> Objective:
    components = frozenset(config.components) - {"vanilla"}
    missing = sorted(components & set(_NOT_YET))
    if missing:
        raise NotImplementedError(
            f"method component(s) {', '.join(missing)} are not implemented yet; "
            "available: vanilla, " + ", ".join(_HEURISTIC_TERMS) + "."
        )
    local = None
    if components & {"local-error", "local-error-biased", "local-stiffness"}:
        local = config.local_sampling_effective
    needs_stiffness = bool(components & {"stiffness", "local-stiffness"})
    schedules = {
        c: getattr(config.regularization, _HEURISTIC_TERMS[c][0]) for c in components
    }
    return Objective(
        components=components,
        local=local,
        stiffness=True if needs_stiffness else None,
        schedules=schedules,
    )
