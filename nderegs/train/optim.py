"""Optimizers of the papers, from optax."""

import optax

from ..config import OptimConfig
from .schedules import inverse_time_decay


def make_optimizer(config: OptimConfig) -> optax.GradientTransformation:
    """adam | adamax | sgd (momentum) | adabelief, with optional inverse time decay of
    the learning rate, L2 weight decay (added to the gradient) and global-norm gradient
    clipping."""
    lr = config.lr
    if config.inverse_decay > 0:
        lr = inverse_time_decay(config.lr, config.inverse_decay)
    base = {
        "adam": lambda: optax.adam(lr),
        "adamax": lambda: optax.adamax(lr),
        "sgd": lambda: optax.sgd(lr, momentum=config.momentum or None),
        "adabelief": lambda: optax.adabelief(lr),
    }[config.name]()
    parts = []
    if config.grad_clip is not None:
        parts.append(optax.clip_by_global_norm(config.grad_clip))
    if config.weight_decay > 0:
        parts.append(optax.add_decayed_weights(config.weight_decay))
    parts.append(base)
    return optax.chain(*parts)
