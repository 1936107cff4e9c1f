"""Configs in the layout before nderegs 0.2 read as the same experiment today.

Then, `task` was a name and the data set and model sizes were top-level sections
shared by every task (`data`, `model`); the KL warm-up was under `regularization`, the
Brownian tree's tolerance under `solver`; keys a choice did not use (an SGD momentum
for Adam, an `end` for a constant schedule) were allowed and ignored. Run directories
written then (their `config.yaml`) and old command lines (`data.path=...`) still work.
"""

from __future__ import annotations

from typing import Any

from .schema import pick_section, variants_of

#: Old `model` keys that belong to the task itself now, per task.
_TASK_KEYS = {
    "classifier": (),
    "sde_classifier": ("num_trajectories", "predict_trajectories"),
    "latent_ode": ("obs_std",),
    "spiral_sde": ("num_trajectories", "predict_trajectories"),
}
#: Old defaults of keys whose default changed when they moved.
_OLD_DEFAULTS = {"spiral_sde": {"num_trajectories": 1, "predict_trajectories": 10}}
_OLD_MODEL_KEYS = (
    "hidden_size",
    "vf_width",
    "vf_depth",
    "activation",
    "latent_size",
    "encoder_hidden",
    "decoder_width",
    "obs_std",
    "num_trajectories",
    "predict_trajectories",
)
_OLD_DATA_KEYS = ("name", "path", "test_fraction", "num_samples", "subset")
_SDE_TASKS = ("sde_classifier", "spiral_sde")
_SCHEDULES = (
    "error",
    "stiffness",
    "local_error",
    "local_stiffness",
    "taynode",
    "kinetic",
    "jacobian",
)


def is_legacy(data: dict[str, Any]) -> bool:
    solver = data.get("solver")
    regularization = data.get("regularization")
    return (
        isinstance(data.get("task"), str)
        or "data" in data
        or "model" in data
        or (isinstance(solver, dict) and "brownian_tol" in solver)
        or (isinstance(regularization, dict) and "kl_anneal_epochs" in regularization)
    )


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """`data` (a plain mapping, modified in place) in today's layout. Old-layout keys
    next to a new-layout `task` (old command-line overrides) override its values."""
    if not is_legacy(data):
        return data
    from .experiment import ExperimentConfig
    from .tasks import TaskConfig  # noqa: F401  (the task variants below)

    task: Any = data.get("task")
    if isinstance(task, str) or task is None:
        task = {"name": task or "classifier"}
    if not isinstance(task, dict):
        return data  # validation says what is wrong
    data["task"] = task
    name = task.get("name", "classifier")
    variant = pick_section(ExperimentConfig.model_fields["task"].annotation, task)
    if variant is None or name not in _TASK_KEYS:
        return data

    old_model = data.pop("model", None)
    if isinstance(old_model, dict):
        for key in _TASK_KEYS[name]:
            if key in old_model:
                task[key] = old_model.pop(key)
        model_fields = pick_section(variant.model_fields["model"].annotation, {}).model_fields  # type: ignore[union-attr]
        model = task.setdefault("model", {})
        for key, value in old_model.items():
            # an old key this task never read goes; an unknown one stays, to be reported
            if isinstance(model, dict) and (key in model_fields or key not in _OLD_MODEL_KEYS):
                model[key] = value
    for key, value in _OLD_DEFAULTS.get(name, {}).items():
        if isinstance(old_model, dict):
            task.setdefault(key, value)

    old_data = data.pop("data", None)
    if isinstance(old_data, dict):
        new_data = task.setdefault("data", {})
        if isinstance(new_data, dict):
            new_data.update(old_data)
            data_variants = variants_of(variant.model_fields["data"].annotation)
            chosen = pick_section(variant.model_fields["data"].annotation, new_data)
            known = (
                data_variants is None
                or new_data.get("name", next(iter(data_variants))) in data_variants
            )
            if chosen is not None and known:
                # keys the data set did not read (e.g. mnist's test_fraction) go
                for key in [
                    k for k in new_data if k not in chosen.model_fields and k in _OLD_DATA_KEYS
                ]:
                    del new_data[key]

    regularization = data.get("regularization")
    if isinstance(regularization, dict):
        kl = regularization.pop("kl_anneal_epochs", None)
        if name == "latent_ode" and kl is not None:
            task["kl_anneal_epochs"] = kl
        for key in _SCHEDULES:
            schedule = regularization.get(key)
            if isinstance(schedule, dict) and schedule.get("kind", "constant") == "constant":
                schedule.pop("end", None)

    solver = data.get("solver")
    if isinstance(solver, dict):
        brownian_tol = solver.pop("brownian_tol", None)
        if name in _SDE_TASKS and brownian_tol is not None:
            task["brownian_tol"] = brownian_tol

    optim = data.get("optim")
    if isinstance(optim, dict) and optim.get("name", "adam") != "sgd":
        optim.pop("momentum", None)
    return data
