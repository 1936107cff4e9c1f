"""`Regularization`: a method, i.e. its regularizers taken together."""

from collections.abc import Mapping

import equinox as eqx
from jaxtyping import Array

from ..core import Heuristics
from .regularizers import AbstractRegularizer, SolveSetup


class Regularization(eqx.Module):
    r"""A regularization method: its components and, through them, the terms it adds
    to the task loss and how the solve must be set up for them. The loss is

    $$L = L_\text{task} + \sum_\text{terms} \lambda_{c(\text{term})} R_\text{term},$$

    summed over the terms sorted by name (one fixed order of evaluation), where
    $\lambda_c$ is the value of the term's coefficient $c$ at this step.

    `regularizers` are the components, e.g. `(GlobalError(), GlobalStiffness())`;
    `()` is vanilla training.

    Example:
        ```python
        method = Regularization((GlobalError(),))
        setup = method.setup  # SolveSetup(local=None, stiffness=None, ...)
        sol, h = nderegs.solve(..., local=setup.local, stiffness=setup.stiffness)
        loss, aux = method.penalize(task_loss, h, batch_size, {"error": 0.1})
        ```

    References: Pal et al., "Opening the Blackbox: Accelerating Neural Differential
    Equations by Regularizing Internal Solver Heuristics", ICML 2021; Pal et al.,
    "Locally Regularized Neural Differential Equations: Some Black Boxes Were Meant to
    Remain Closed!", ICML 2023.
    """

    regularizers: tuple[AbstractRegularizer, ...] = ()

    @property
    def name(self) -> str:
        """The method string, e.g. "error+stiffness" ("vanilla" without regularizers)."""
        return "+".join(r.name for r in self.regularizers) or "vanilla"

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

    def coefficient_names(self) -> dict[str, str]:
        """Term name -> coefficient name."""
        names: dict[str, str] = {}
        for regularizer in self.regularizers:
            names.update(regularizer.coefficients())
        return names

    def terms(self, h: Heuristics, batch_size: int) -> dict[str, Array]:
        """Each term's value for the solve of a batch, sorted by name. The integrals sum
        over the batch solved as one system: divided by `batch_size` they are per-sample
        means."""
        setup = self.setup
        integrals = {
            name: h.integrals[i] / batch_size for i, name in enumerate(setup.integral_names)
        }
        values: dict[str, Array] = {}
        for regularizer in self.regularizers:
            values.update(regularizer.terms(h, integrals))
        return dict(sorted(values.items()))

    def penalize(
        self, task_loss: Array, h: Heuristics, batch_size: int, coefficients: Mapping[str, Array]
    ) -> tuple[Array, dict[str, Array]]:
        """`task_loss` plus each term times its coefficient, and an aux dict with each
        term (`reg_<term>`), the solve's NFE, R_E, R_S and whether it succeeded."""
        terms = self.terms(h, batch_size)
        names = self.coefficient_names()
        total = task_loss
        for term, value in terms.items():
            total = total + coefficients[names[term]] * value
        aux: dict[str, Array] = {f"reg_{term}": value for term, value in terms.items()}
        aux.update(nfe=h.nfe, error=h.error, successful=h.successful)  # pyright: ignore[reportArgumentType]
        if h.stiffness is not None:
            aux["stiffness"] = h.stiffness
        return total, aux
