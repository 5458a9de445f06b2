"""Flow layers: each maps data-shaped tensors invertibly and reports log|det J| per item."""

from flows.layers.actnorm import EquivariantActNorm
from flows.layers.base import FlowLayer, InverseInfo
from flows.layers.logit import LogitTransform
from flows.layers.residual import ResidualBlock

__all__ = ["EquivariantActNorm", "FlowLayer", "InverseInfo", "LogitTransform", "ResidualBlock"]
