"""Experiment tracking: each run's per-epoch metrics, mirrored to TensorBoard event
files (tensorboardX) or an offline Weights & Biases run, so that
`tensorboard --logdir runs/` shows a sweep side by side. `metrics.jsonl` stays the
source of truth; a tracker only mirrors its rows.
"""

import abc
from collections.abc import Mapping
import math
from pathlib import Path
from typing import Any, ClassVar


class AbstractTracker(abc.ABC):
    """Receives each `metrics.jsonl` row as it is written."""

    #: The name in a config's `tracking: [...]`.
    name: ClassVar[str]

    @abc.abstractmethod
    def __init__(self, run_dir: Path, run_config: Mapping[str, Any], start_epoch: int):
        """Write into `run_dir`; a resumed run starts after `start_epoch` epochs."""

    @abc.abstractmethod
    def log(self, row: Mapping[str, Any], epoch: int) -> None:
        """Record the scalars of one metrics row (after `epoch` epochs)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Flush and release the tracker's files."""


def scalars(row: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers of a metrics row (its global step among them), without the
    epoch, which is the x axis."""
    return {
        key: float(value)
        for key, value in row.items()
        if key != "epoch"
        and isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
    }


class TensorBoard(AbstractTracker):
    """TensorBoard event files in `<run dir>/tensorboard`, one scalar per metric, the
    epoch as the step. A resumed run purges the events logged after its checkpoint's
    epoch (as metrics.jsonl drops those rows)."""

    name: ClassVar[str] = "tensorboard"

    def __init__(self, run_dir: Path, run_config: Mapping[str, Any], start_epoch: int):
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(
            logdir=str(Path(run_dir) / "tensorboard"),
            purge_step=start_epoch + 1,
        )

    def log(self, row: Mapping[str, Any], epoch: int) -> None:
        for key, value in scalars(row).items():
            self.writer.add_scalar(key, value, global_step=epoch)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class Wandb(AbstractTracker):
    """An offline Weights & Biases run in `<run dir>/wandb` (`wandb sync` uploads it);
    needs the optional extra: `pip install nderegs[wandb]`."""

    name: ClassVar[str] = "wandb"

    def __init__(self, run_dir: Path, run_config: Mapping[str, Any], start_epoch: int):
        try:
            import wandb  # pyright: ignore[reportMissingImports]
        except ImportError:
            raise ImportError(
                "tracking: [wandb] needs the wandb package: pip install 'nderegs[wandb]' "
                "(or remove wandb from tracking)."
            ) from None
        self.run = wandb.init(
            mode="offline",
            dir=str(run_dir),
            name=Path(run_dir).name,
            config=dict(run_config),
            reinit=True,
        )

    def log(self, row: Mapping[str, Any], epoch: int) -> None:
        self.run.log(scalars(row), step=epoch)

    def close(self) -> None:
        self.run.finish()


#: name -> tracker class.
TRACKERS: dict[str, type[AbstractTracker]] = {t.name: t for t in (TensorBoard, Wandb)}


def make_trackers(
    names: list[str], run_dir: Path, run_config: Mapping[str, Any], start_epoch: int = 0
) -> list[AbstractTracker]:
    """The trackers a config's `tracking` list names, writing into `run_dir`."""
    return [TRACKERS[name](run_dir, run_config, start_epoch) for name in names]
