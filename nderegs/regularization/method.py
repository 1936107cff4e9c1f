"""`Regularization`: a method, i.e. its regularizers taken together."""

from collections.abc import Mapping
from typing import Any

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike

from ..core import Heuristics
from .coefficients import AbstractCoefficient, Shared
from .regularizers import AbstractRegularizer, SolveSetup

#: The name of the method without regularizers, in method strings.
VANILLA = "vanilla"


class Regularization(eqx.Module):
    r"""A regularization method: its components and, through them, the terms it adds
    to the task loss, the coefficient of each, and how the solve must be set up. The
    loss is

    $$L = L_\text{task} + \sum_\text{terms} \lambda_\text{term} R_\text{term},$$

    summed over the terms sorted by name (one fixed order of evaluation), where
    $\lambda_\text{term}$ is the value of the term's coefficient at this step.

    `regularizers` are the components, e.g. `(GlobalError(coefficient=3.0),
    GlobalStiffness(coefficient=0.01))`;
    `()` is vanilla training.

    Example:
        ```python
        method = Regularization((GlobalError(coefficient=nderegs.NFEBudget(target=40)),))
        states = method.init_coefficients()
        setup = method.setup  # SolveSetup(local=None, stiffness=None, ...)
        # in the (jitted) step:
        sol, h = nderegs.solve(..., local=setup.local)
        lambdas = method.coefficient_values(states, epoch)
        loss, aux = method.penalize(task_loss, h, batch_size, lambdas)
        # once per epoch:
        states = method.update_coefficients(states, nfe=epoch_nfes, loss=epoch_losses)
        ```

    References: Pal et al., "Opening the Blackbox: Accelerating Neural Differential
    Equations by Regularizing Internal Solver Heuristics", ICML 2021; Pal et al.,
    "Locally Regularized Neural Differential Equations: Some Black Boxes Were Meant to
    Remain Closed!", ICML 2023.
    """

    regularizers: tuple[AbstractRegularizer, ...] = ()

    def __check_init__(self):
        regularized: dict[str, str] = {}
        for regularizer in self.regularizers:
            quantity = regularizer.regularizes
            if quantity is not None and quantity in regularized:
                raise ValueError(
                    f"Components '{regularized[quantity]}' and '{regularizer.name}' both "
                    f"regularize the {quantity}; a method holds one of them."
                )
            if quantity is not None:
                regularized[quantity] = regularizer.name
        coefficients = self.coefficients()
        for term, coefficient in coefficients.items():
            if isinstance(coefficient, Shared):
                source = coefficients.get(coefficient.term)
                if source is None or isinstance(source, Shared):
                    owned = sorted(t for t, c in coefficients.items() if not isinstance(c, Shared))
                    raise ValueError(
                        f"The coefficient of term '{term}' is shared with term "
                        f"{coefficient.term!r}, which is not a term with a coefficient of its "
                        f"own in this method; accepted: {', '.join(owned) or 'none'}."
                    )

    @property
    def name(self) -> str:
        """The method string, e.g. "error+stiffness" (`VANILLA` without regularizers)."""
        return "+".join(r.name for r in self.regularizers) or VANILLA

    @property
    def components(self) -> frozenset[str]:
        return frozenset(r.name for r in self.regularizers)

    @property
    def setup(self) -> SolveSetup:
        """How the solve must be set up for every component."""
        setup = SolveSetup()
        for regularizer in self.regularizers:
            setup = regularizer.configure(setup)
        return setup

    def coefficients(self) -> dict[str, AbstractCoefficient]:
        """Term name -> its coefficient, sorted by term."""
        coefficients: dict[str, AbstractCoefficient] = {}
        for regularizer in self.regularizers:
            coefficients.update(regularizer.coefficients())
        return dict(sorted(coefficients.items()))

    def init_coefficients(self) -> dict[str, Any]:
        """Term name -> the initial state of its coefficient (a pytree)."""
        return {term: c.init() for term, c in self.coefficients().items()}

    def coefficient_values(self, states: Mapping[str, Any], epoch: ArrayLike) -> dict[str, Array]:
        """Term name -> λ for the coefficient `states` at `epoch` (jit-safe)."""
        coefficients = self.coefficients()
        values = {
            term: c.value(states[term], epoch)
            for term, c in coefficients.items()
            if not isinstance(c, Shared)
        }
        for term, c in coefficients.items():
            if isinstance(c, Shared):
                values[term] = c.ratio * values[c.term]
        return dict(sorted(values.items()))

    def update_coefficients(
        self,
        states: Mapping[str, Any],
        *,
        nfe: ArrayLike | None = None,
        loss: ArrayLike | None = None,
    ) -> dict[str, Any]:
        """Every coefficient's state after a period of training whose solves had NFE
        `nfe` and task loss `loss` (see `AbstractCoefficient.update`)."""
        return {
            term: c.update(states[term], nfe=nfe, loss=loss)
            for term, c in self.coefficients().items()
        }

    def terms(self, h: Heuristics, batch_size: int) -> dict[str, Array]:
        """Each term's value for the solve of a batch, sorted by name. The integrals sum
        over the batch solved as one system: divided by `batch_size` they are per-sample
        means."""
        setup = self.setup
        # h.integrals holds one value per name (None exactly when there are none).
        integrals = {
            name: value / batch_size
            for name, value in zip(setup.integral_names, h.integrals or (), strict=True)
        }
        values: dict[str, Array] = {}
        for regularizer in self.regularizers:
            values.update(regularizer.terms(h, integrals))
        return dict(sorted(values.items()))

    def penalize(
        self, task_loss: Array, h: Heuristics, batch_size: int, coefficients: Mapping[str, Array]
    ) -> tuple[Array, dict[str, Array]]:
        """`task_loss` plus each term times its coefficient's value (`coefficients`: term
        name -> λ, as `coefficient_values` gives), and an aux dict with each term
        (`reg_<term>`), the solve's NFE, R_E, R_S and whether it succeeded."""
        terms = self.terms(h, batch_size)
        missing = sorted(terms.keys() - coefficients.keys())
        if missing:
            raise KeyError(
                f"penalize needs a coefficient value for every term; missing: {', '.join(missing)} "
                f"(given: {', '.join(sorted(coefficients)) or 'none'})."
            )
        total = task_loss
        for term, value in terms.items():
            # λ in the term's own dtype (a budget's state is float32; a float64 run
            # under strict promotion must not mix them).
            total = total + jnp.asarray(coefficients[term], value.dtype) * value
        aux: dict[str, Array] = {f"reg_{term}": value for term, value in terms.items()}
        aux.update(nfe=h.nfe, error=h.error, successful=h.successful)  # pyright: ignore[reportArgumentType]
        if h.stiffness is not None:
            aux["stiffness"] = h.stiffness
        return total, aux
