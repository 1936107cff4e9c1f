"""Training: the JIT training loop, run directories and checkpoints."""

from .loop import (
    default_run_dir,
    load_run,
    make_evaluate_step,
    make_train_step,
    train,
    TrainingDiverged,
)
from .run_directory import RunDirectory
