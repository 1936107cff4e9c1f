"""Tasks: a model for a data set, its training loss and its evaluation metric. The
interface is `AbstractTask`; each concrete task is final."""

from .base import (
    AbstractTask,
    Arrays,
    count_parameters,
    Evaluation,
    evaluation_key,
    metric_named,
    task_metrics,
)
from .classification import AbstractClassificationTask, ClassifierTask, SDEClassifierTask
from .density import DensityTask, MakeCNF
from .latent_ode import LatentODETask
from .metric import Metric
from .spiral_sde import SpiralSDETask
