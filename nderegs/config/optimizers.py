"""The optim section: the papers' optimizers from optax, learning-rate decay, weight
decay, clipping, batch size and epochs. Adding an optimizer is one class here."""

from __future__ import annotations

import abc
from typing import Annotated, Literal, Optional

import optax
from pydantic import Field

from .base import Choice, Float, Int, Variant


class AbstractOptimizerConfig(Variant, abc.ABC):
    name: str
    lr: Float = Field(default=1e-2, gt=0)
    #: The learning rate is lr / (1 + inverse_decay·step) (the papers' inverse decay).
    inverse_decay: Float = Field(default=0.0, ge=0)
    #: L2 weight decay, added to the gradient.
    weight_decay: Float = Field(default=0.0, ge=0)
    #: Global-norm gradient clipping; None -> no clipping.
    grad_clip: Optional[Float] = Field(default=None, gt=0)
    batch_size: Int = Field(default=256, gt=0)
    epochs: Int = Field(default=30, gt=0)

    @abc.abstractmethod
    def base(self, learning_rate: optax.ScalarOrSchedule) -> optax.GradientTransformation:
        """The optimizer itself, at `learning_rate`."""

    def build(self) -> optax.GradientTransformation:
        """Clipping, then weight decay, then the optimizer at the (decaying) rate."""
        lr: optax.ScalarOrSchedule = self.lr
        if self.inverse_decay > 0:
            lr = inverse_time_decay(self.lr, self.inverse_decay)
        parts = []
        if self.grad_clip is not None:
            parts.append(optax.clip_by_global_norm(self.grad_clip))
        if self.weight_decay > 0:
            parts.append(optax.add_decayed_weights(self.weight_decay))
        parts.append(self.base(lr))
        return optax.chain(*parts)


class Adam(AbstractOptimizerConfig):
    name: Literal["adam"] = "adam"

    def base(self, learning_rate: optax.ScalarOrSchedule) -> optax.GradientTransformation:
        return optax.adam(learning_rate)


class Adamax(AbstractOptimizerConfig):
    name: Literal["adamax"] = "adamax"

    def base(self, learning_rate: optax.ScalarOrSchedule) -> optax.GradientTransformation:
        return optax.adamax(learning_rate)


class SGD(AbstractOptimizerConfig):
    name: Literal["sgd"] = "sgd"
    momentum: Float = Field(default=0.9, ge=0, lt=1)

    def base(self, learning_rate: optax.ScalarOrSchedule) -> optax.GradientTransformation:
        return optax.sgd(learning_rate, momentum=self.momentum or None)


class AdaBelief(AbstractOptimizerConfig):
    name: Literal["adabelief"] = "adabelief"

    def base(self, learning_rate: optax.ScalarOrSchedule) -> optax.GradientTransformation:
        return optax.adabelief(learning_rate)


OptimizerConfig = Annotated[Adam | Adamax | SGD | AdaBelief, Choice(default=Adam)]


def inverse_time_decay(learning_rate: float, decay: float) -> optax.Schedule:
    """lr / (1 + decay·step): the papers' "inverse decay" (optax has no such schedule)."""
    return lambda step: learning_rate / (1 + decay * step)
