"""Typed, validated experiment configuration.

An experiment is one YAML file (see ``configs/``) plus optional dotted command-line
overrides such as ``solver.rtol=1e-8`` or ``method=error+stiffness``. Each choice (task,
data set, solver, adjoint, optimizer, coefficient) is a pydantic model that
builds its object (``build()``), selected by its ``name`` (``kind`` for coefficients);
the variants live in the modules of their section (`tasks`, `datasets`, `solvers`,
`optimizers`, `coefficients`, `regularization`, `parallel`). Every problem is reported
as one `ConfigError` naming the offending dotted keys and what they accept.

```yaml
name: digits
seed: 0
method: error               # '+'-joined components, see METHOD_COMPONENTS
task:
  name: classifier          # classifier | sde_classifier | latent_ode | spiral_sde | density
  data: {name: digits, test_fraction: 0.2}
  model: {hidden_size: 32, vf_width: 32, vf_depth: 1, activation: tanh}
solver: {name: tsit5, rtol: 1.0e-6, atol: 1.0e-6, adjoint: recursive_checkpoint}
regularization:
  error: {kind: constant, start: 0.1}
optim: {name: adam, lr: 1.0e-2, batch_size: 256, epochs: 30}
```
"""

from .base import ConfigError
from .experiment import ExperimentConfig
from .loading import (
    config_changes,
    config_from_dict,
    config_to_dict,
    configs_dir,
    load_config,
    save_config,
)
from .regularization import METHOD_COMPONENTS, parse_method

__all__ = [
    "ConfigError",
    "ExperimentConfig",
    "METHOD_COMPONENTS",
    "config_changes",
    "config_from_dict",
    "config_to_dict",
    "configs_dir",
    "load_config",
    "parse_method",
    "save_config",
]
