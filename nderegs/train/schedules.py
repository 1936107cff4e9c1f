"""Schedules: functions of the optimizer step (optax's convention)."""

import math

import optax

from ..config import ScheduleConfig


def coefficient_schedule(
    config: ScheduleConfig, *, steps_per_epoch: int, epochs: int
) -> optax.Schedule:
    """A regularization coefficient λ(step).

    "constant": λ0. "exponential": paper 1's per-epoch anneal λ(e) = λ0·exp(−k·e) with
    k = log(λ0/λ1)/(epochs − 1), so the first epoch uses λ0 and the last λ1.
    """
    if config.kind == "constant":
        return optax.constant_schedule(config.start)
    rate = math.exp(math.log(config.end / config.start) / max(epochs - 1, 1))
    return optax.exponential_decay(
        init_value=config.start,
        transition_steps=steps_per_epoch,
        decay_rate=rate,
        staircase=True,
    )


def inverse_time_decay(learning_rate: float, decay: float) -> optax.Schedule:
    """lr / (1 + decay·step): the papers' "inverse decay" of the SGD learning rate
    (optax has no such schedule)."""
    return lambda step: learning_rate / (1 + decay * step)
