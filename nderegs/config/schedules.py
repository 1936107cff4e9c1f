"""Coefficient schedules λ(step) of the regularization terms (optax schedules)."""

from __future__ import annotations

import math
from typing import Literal, TYPE_CHECKING

import optax
from pydantic import Field

from .base import choice, Float, Variant


class ConstantSchedule(Variant):
    """λ = `start` throughout training."""

    tag_field = "kind"
    kind: Literal["constant"] = "constant"
    start: Float = Field(default=0.0, ge=0)

    def build(self, *, steps_per_epoch: int, epochs: int) -> optax.Schedule:
        return optax.constant_schedule(self.start)


class ExponentialSchedule(Variant):
    """Paper 1's per-epoch anneal λ(e) = λ₀·exp(−k·e), k = log(λ₀/λ₁)/(epochs − 1):
    the first epoch uses λ₀ = `start` and the last λ₁ = `end`."""

    tag_field = "kind"
    kind: Literal["exponential"] = "exponential"
    start: Float = Field(gt=0)
    end: Float = Field(gt=0)

    def build(self, *, steps_per_epoch: int, epochs: int) -> optax.Schedule:
        rate = math.exp(math.log(self.end / self.start) / max(epochs - 1, 1))
        return optax.exponential_decay(
            init_value=self.start,
            transition_steps=steps_per_epoch,
            decay_rate=rate,
            staircase=True,
        )


if TYPE_CHECKING:
    Schedule = ConstantSchedule | ExponentialSchedule
else:
    Schedule = choice(ConstantSchedule, ExponentialSchedule, default="constant")


def constant(value: float):
    """A default factory: ``Field(default_factory=constant(0.1))``."""
    return lambda: ConstantSchedule(start=value)


__all__ = ["ConstantSchedule", "ExponentialSchedule", "Schedule", "constant"]
