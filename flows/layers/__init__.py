"""Flow layers: each maps data-shaped tensors invertibly and reports log|det J| per item."""

from flows.layers.actnorm import EquivariantActNorm
from flows.layers.autoregressive import GroupAutoregressive
from flows.layers.base import EquivariantNet, FlowLayer, InverseInfo
from flows.layers.coupling import CheckerboardCoupling, FieldCoupling
from flows.layers.linear import ConvExponential, FieldMixing
from flows.layers.logit import LogitTransform
from flows.layers.polar import IsotropicActNorm, PolarSplineBlock
from flows.layers.residual import ResidualBlock
from flows.layers.spline import ElementwiseSpline, SplineCoupling

__all__ = [
    "CheckerboardCoupling",
    "ConvExponential",
    "ElementwiseSpline",
    "EquivariantActNorm",
    "EquivariantNet",
    "FieldCoupling",
    "FieldMixing",
    "FlowLayer",
    "GroupAutoregressive",
    "InverseInfo",
    "IsotropicActNorm",
    "LogitTransform",
    "PolarSplineBlock",
    "ResidualBlock",
    "SplineCoupling",
]
