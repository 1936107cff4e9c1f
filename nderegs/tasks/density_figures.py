"""Figures of a density task's run: the data, the learned 2-D density on a grid, and
samples of the flow (matplotlib's Agg canvas; pyplot is left untouched)."""

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from ..layers import CNF

#: Where the heat map of a 2-D density is drawn, and how finely.
PLOT_BOX = 4.5
PLOT_GRID = 120


def density_grid(model: CNF, dtype) -> np.ndarray:
    """log p on a `PLOT_GRID`² grid over [−`PLOT_BOX`, `PLOT_BOX`]² (rows: y)."""
    axis = np.linspace(-PLOT_BOX, PLOT_BOX, PLOT_GRID, dtype=dtype)
    xx, yy = np.meshgrid(axis, axis)
    points = jnp.asarray(np.stack([xx.ravel(), yy.ravel()], -1))
    log_p, _ = eqx.filter_jit(lambda m, x: m.log_prob(x))(model, points)
    return np.asarray(log_p).reshape(PLOT_GRID, PLOT_GRID)


def density_figure(data: np.ndarray, samples: np.ndarray, log_density: np.ndarray | None):
    """Data | learned density (when given) | samples, on one matplotlib Figure (the
    first two coordinates for data of more dimensions)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = 3 if log_density is not None else 2
    figure = Figure(figsize=(3.2 * panels, 3.2), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, panels)
    box = (-PLOT_BOX, PLOT_BOX) if log_density is not None else None
    scatter = [(axes[0], data, "data"), (axes[-1], samples, "samples")]
    for ax, points, title in scatter:
        ax.scatter(points[:, 0], points[:, 1], s=1, alpha=0.4, color="k")
        ax.set_title(title)
    if log_density is not None:
        axes[1].imshow(
            np.exp(log_density),
            origin="lower",
            extent=(-PLOT_BOX, PLOT_BOX, -PLOT_BOX, PLOT_BOX),
            cmap="magma",
        )
        axes[1].set_title("learned density")
    for ax in axes:
        if box is not None:
            ax.set_xlim(*box)
            ax.set_ylim(*box)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    return figure
