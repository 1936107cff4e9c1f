"""The core: per-step solver heuristics and `solve`. Knows nothing of models, data,
configs or the command line."""

from .backward_count import BackwardCount, counting_backward
from .estimates import find_stage_pair, scaled_error, StagePair, stiffness_estimate
from .heuristics import Heuristics
from .integrals import AbstractIntegral, JacobianFrobenius, KineticEnergy, TaylorDerivative
from .solve import LOCAL_SAMPLINGS, solve
