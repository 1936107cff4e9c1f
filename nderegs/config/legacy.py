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

#: Old `model` keys that belong to the task itself now.
_TASK_LEVEL_KEYS = ("num_trajectories", "predict_trajectories", "obs_std")
#: Old keys of other sections that belong to the task now.
_MOVED_TO_TASK = ("kl_anneal_epochs", "brownian_tol")
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


def relocate(data: dict[str, Any]) -> dict[str, Any]:
    """Move old-layout keys of `data` (modified in place) to where they are today,
    dropping nothing: a later override may still choose the variant that reads them.
    Old-layout keys next to a new-layout `task` (old command-line overrides) override
    its values."""
    if not is_legacy(data):
        return data
    from .experiment import ExperimentConfig

    task: Any = data.get("task")
    from_name = isinstance(task, str) or task is None
    if from_name:
        task = {"name": task or "classifier"}
    if not isinstance(task, dict):
        return data  # validation says what is wrong
    data["task"] = task
    name = task.get("name", "classifier")
    variant = pick_section(ExperimentConfig.model_fields["task"].annotation, task)
    if variant is None:
        return data

    old_model = data.pop("model", None)
    if isinstance(old_model, dict):
        for key in _TASK_LEVEL_KEYS:
            if key in old_model:
                task[key] = old_model.pop(key)
        model = task.setdefault("model", {})
        if isinstance(model, dict):
            model.update(old_model)
        if from_name:
            for key, value in _OLD_DEFAULTS.get(name, {}).items():
                task.setdefault(key, value)

    old_data = data.pop("data", None)
    if isinstance(old_data, dict):
        new_data = task.setdefault("data", {})
        if isinstance(new_data, dict):
            # None meant "the loader's default" for every old data key
            new_data.update({k: v for k, v in old_data.items() if v is not None or k == "subset"})

    regularization = data.get("regularization")
    if isinstance(regularization, dict) and "kl_anneal_epochs" in regularization:
        task["kl_anneal_epochs"] = regularization.pop("kl_anneal_epochs")
    solver = data.get("solver")
    if isinstance(solver, dict) and "brownian_tol" in solver:
        task["brownian_tol"] = solver.pop("brownian_tol")
    data[_PRUNE] = True
    return data


def prune(data: dict[str, Any]) -> dict[str, Any]:
    """After the overrides: drop the keys an old-layout config carried that the chosen
    variants never read (an SGD momentum under Adam, an `end` of a constant schedule,
    a classifier's latent-ODE sizes, mnist's test_fraction). Unknown keys stay, to be
    reported."""
    if not data.pop(_PRUNE, False):
        return data
    from .experiment import ExperimentConfig

    task = data.get("task")
    if isinstance(task, dict):
        variant = pick_section(ExperimentConfig.model_fields["task"].annotation, task)
        if variant is not None:
            for key in [k for k in _TASK_LEVEL_KEYS + _MOVED_TO_TASK if k in task]:
                if key not in variant.model_fields or task[key] is None:
                    del task[key]
        model = task.get("model")
        if variant is not None and "model" in variant.model_fields and isinstance(model, dict):
            fields = pick_section(variant.model_fields["model"].annotation, {})
            if fields is not None:
                for key in [
                    k for k in model if k in _OLD_MODEL_KEYS and k not in fields.model_fields
                ]:
                    del model[key]
        new_data = task.get("data")
        if variant is not None and isinstance(new_data, dict):
            chosen = pick_section(variant.model_fields["data"].annotation, new_data)
            options = variants_of(variant.model_fields["data"].annotation)
            tag = new_data.get("name", next(iter(options))) if options else None
            known = options is None or (isinstance(tag, str) and tag in options)
            if chosen is not None and known:
                for key in [
                    k for k in new_data if k in _OLD_DATA_KEYS and k not in chosen.model_fields
                ]:
                    del new_data[key]
    regularization = data.get("regularization")
    if isinstance(regularization, dict):
        for key in _SCHEDULES:
            schedule = regularization.get(key)
            if isinstance(schedule, dict) and schedule.get("kind", "constant") == "constant":
                schedule.pop("end", None)
    optim = data.get("optim")
    if isinstance(optim, dict) and optim.get("name", "adam") != "sgd":
        optim.pop("momentum", None)
    return data


#: Marks a config that had old-layout keys, for `prune` (removed there).
_PRUNE = "__nderegs_prune_old_keys__"
