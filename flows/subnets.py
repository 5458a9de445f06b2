"""Lipschitz-constrained equivariant sub-networks g for G-residual blocks."""

from __future__ import annotations

import itertools

from flows.config import FlowConfig
from flows.groups import FieldTypes, enn
from flows.lipschitz import LipschitzConv2d, LipschitzLinear
from flows.nonlinearities import LipSwish, NormSoftThreshold

__all__ = ["build_subnet"]


def _nonlinearity(field_type: enn.FieldType, config: FlowConfig, pointwise: bool):
    if not pointwise:
        return NormSoftThreshold(field_type)
    if config.activation == "elu":
        return enn.ELU(field_type)
    return LipSwish(field_type)


def build_subnet(types: FieldTypes, config: FlowConfig) -> enn.SequentialModule:
    """The sub-network g: data type -> hidden -> ... -> data type, with Lip(g) <= c.

    Every linear layer has sigma <= c and every nonlinearity is 1-Lipschitz, so the composition
    is c^(hidden_layers + 1)-Lipschitz. Images use 'same' convolutions with the configured kernel
    size at the first and last layer and 1x1 in between (the 3-1-3 shape of Residual Flows).
    """
    c = config.lipschitz_coeff
    widths = [types.data] + [types.hidden] * config.hidden_layers + [types.data]
    modules: list[enn.EquivariantModule] = []
    for position, (in_type, out_type) in enumerate(itertools.pairwise(widths)):
        if config.is_points:
            modules.append(LipschitzLinear(in_type, out_type, c))
        else:
            is_outer = position in (0, len(widths) - 2)
            kernel = config.kernel_size if is_outer else 1
            grid = (config.data_shape[1], config.data_shape[2])
            modules.append(LipschitzConv2d(in_type, out_type, kernel, grid, c))
        if position < len(widths) - 2:
            modules.append(_nonlinearity(out_type, config, types.pointwise))
    return enn.SequentialModule(*modules)
