"""Training: objectives from methods, tasks, the JIT training loop, checkpoints."""

from .loop import CONFIG, default_run_dir, load_run, METRICS, SUMMARY, train, TrainingDiverged
from .objectives import make_objective, Objective
from .tasks import make_task
