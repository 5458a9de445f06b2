"""efnf's flow library: equivariant finite normalizing flows on images and 2-D points.

from flows import FlowConfig, build_flow
flow = build_flow(FlowConfig(family="residual", group="C4", data_shape=[2]))
lp = flow.log_prob(x, method="exact")
"""

from flows.build import build_flow
from flows.config import FlowConfig, LogDetEstimatorConfig, TrainConfig
from flows.errors import DataError, FlowError, InputError, InverseNotConverged, TrainingDiverged
from flows.flow import Flow, InverseReport, LogProbEstimate
from flows.training import TrainCallbacks, TrainResult, train

__all__ = [
    "DataError",
    "Flow",
    "FlowConfig",
    "FlowError",
    "InputError",
    "InverseNotConverged",
    "InverseReport",
    "LogDetEstimatorConfig",
    "LogProbEstimate",
    "TrainCallbacks",
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "build_flow",
    "train",
]
