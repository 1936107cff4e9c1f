"""Training: the JIT training loop, run directories and checkpoints."""

from .loop import (
    default_run_dir,
    evaluate_run,
    evaluate_test_set,
    load_run,
    make_evaluate_step,
    make_train_step,
    restore_run,
    run_dir_name,
    train,
    TrainingDiverged,
)
from .run_directory import CheckpointError, RunDirectory
