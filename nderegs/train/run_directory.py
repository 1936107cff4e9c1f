"""`RunDirectory`: the files of one training run, in one place.

| file | content |
|---|---|
| `config.yaml` | the resolved configuration |
| `metrics.jsonl` | one JSON row per evaluated epoch |
| `checkpoint.eqx`, `checkpoint.json` | model + optimizer state after the last completed epoch, and progress (written atomically) |
| `summary.json` | the run's figures, written when it finishes |
| `eval.json` | the figures of the last `nderegs eval` |
"""

from collections.abc import Callable
import json
import os
from pathlib import Path
from typing import Any

import equinox as eqx
import jax.numpy as jnp

from ..config import ConfigError, ExperimentConfig, load_config, save_config


class CheckpointError(ValueError):
    """A checkpoint that cannot be read back (truncated, corrupt, or of another model)."""


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def _replace_atomically(path: Path, write: Callable[[Path], Any]) -> None:
    # Write to a temporary name, then rename: an interrupted write never leaves a
    # half-written file in place of a good one.
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


class RunDirectory:
    """The files of the run in `path`.

    Example:
        ```python
        run = RunDirectory("runs/digits-error-seed0")
        rows = run.read_metrics()          # [{"epoch": 1, "test_nfe": ..., ...}, ...]
        summary = run.read_summary()       # None while the run is unfinished
        ```
    """

    CONFIG = "config.yaml"
    METRICS = "metrics.jsonl"
    SUMMARY = "summary.json"
    CHECKPOINT = "checkpoint.eqx"
    PROGRESS = "checkpoint.json"
    EVAL = "eval.json"

    def __init__(self, path: str | os.PathLike[str], *, writes: bool = True):
        self.path = Path(path)
        #: False on every process of a multi-host run but the first: its writes are skipped.
        self.writes = writes

    def __repr__(self) -> str:
        return f"RunDirectory({str(self.path)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunDirectory) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    @property
    def config_file(self) -> Path:
        return self.path / self.CONFIG

    @property
    def metrics_file(self) -> Path:
        return self.path / self.METRICS

    @property
    def summary_file(self) -> Path:
        return self.path / self.SUMMARY

    @property
    def checkpoint_file(self) -> Path:
        return self.path / self.CHECKPOINT

    @property
    def progress_file(self) -> Path:
        return self.path / self.PROGRESS

    # -- state ------------------------------------------------------------- #

    @property
    def has_config(self) -> bool:
        return self.config_file.exists()

    @property
    def has_checkpoint(self) -> bool:
        return self.checkpoint_file.exists()

    @property
    def is_finished(self) -> bool:
        return self.summary_file.exists()

    @property
    def is_started(self) -> bool:
        return self.is_finished or self.has_checkpoint

    # -- files ------------------------------------------------------------- #

    def read_config(self, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
        """The run's configuration (with `overrides` applied); `ConfigError` if the
        directory holds none, or for a problem of its config.yaml or of the overrides
        (a problem only the overrides make, e.g. ``task.data.name=mnist`` without a
        path, is told as theirs, not the file's)."""
        if not self.has_config:
            raise ConfigError(f"{self.path}: no {self.CONFIG} there (is it a run directory?)")
        return load_config(self.config_file, list(overrides))

    def write_config(self, config: ExperimentConfig) -> None:
        if not self.writes:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        save_config(config, self.config_file)

    def read_metrics(self) -> list[dict[str, Any]]:
        """The rows of `metrics.jsonl` ([] before the first evaluation)."""
        if not self.metrics_file.exists():
            return []
        lines = self.metrics_file.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        if not self.writes:
            return
        text = "".join(json.dumps(row) + "\n" for row in rows)
        _replace_atomically(self.metrics_file, lambda p: p.write_text(text))

    def read_summary(self) -> dict[str, Any] | None:
        if not self.is_finished:
            return None
        return json.loads(self.summary_file.read_text())

    def write_summary(self, summary: dict[str, Any]) -> None:
        if not self.writes:
            return
        text = json.dumps(summary, indent=2)
        _replace_atomically(self.summary_file, lambda p: p.write_text(text))

    def write_eval(self, figures: dict[str, Any]) -> Path:
        path = self.path / self.EVAL
        text = json.dumps(figures, indent=2)
        _replace_atomically(path, lambda p: p.write_text(text))
        return path

    def save_checkpoint(
        self, model, opt_state, epoch: int, progress: dict[str, Any], coefficients: Any = ()
    ) -> None:
        """Store (model, opt_state, the coefficients' states) after `epoch` completed
        epochs, with `progress` (JSON-able bookkeeping such as the accumulated training
        seconds)."""
        if not self.writes:
            return
        state = (model, opt_state, jnp.asarray(epoch, jnp.int32), coefficients)
        _replace_atomically(self.checkpoint_file, lambda p: eqx.tree_serialise_leaves(p, state))
        text = json.dumps({**progress, "epoch": epoch}, indent=2)
        _replace_atomically(self.progress_file, lambda p: p.write_text(text))

    def load_checkpoint(
        self, model_like, opt_state_like, coefficients_like: Any = ()
    ) -> tuple[Any, Any, int, dict[str, Any], Any]:
        """(model, opt_state, epoch, progress, coefficient states); the templates give
        the structure (a freshly initialised model, optimizer state and coefficient
        states)."""
        if not self.has_checkpoint:
            raise FileNotFoundError(f"No checkpoint in {self.path} (looked for {self.CHECKPOINT}).")
        like = (model_like, opt_state_like, jnp.asarray(0, jnp.int32), coefficients_like)
        try:
            model, opt_state, epoch, coefficients = eqx.tree_deserialise_leaves(
                self.checkpoint_file, like
            )
        except Exception as e:  # equinox/numpy raise many kinds for a bad file
            raise CheckpointError(
                f"{self.checkpoint_file} cannot be read back ({_first_line(e)}): it is "
                f"truncated or corrupt, or holds a model of another size than "
                f"{self.config_file} describes. Restore the file, or start the run again "
                "in a new directory."
            ) from None
        progress: dict[str, Any] = {}
        if self.progress_file.exists():
            try:
                progress = json.loads(self.progress_file.read_text())
                if not isinstance(progress, dict):
                    raise ValueError("expected a JSON object")
            except ValueError as e:
                raise CheckpointError(
                    f"{self.progress_file} is not valid JSON ({_first_line(e)}); it holds the "
                    "run's progress (epoch, accumulated training time). Restore it or "
                    "start the run again in a new directory."
                ) from None
        return model, opt_state, int(epoch), progress, coefficients
