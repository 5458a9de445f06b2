"""Equivariant sub-networks: Lipschitz-constrained residual branches g, and the conditioners
(s, t networks) of coupling and autoregressive layers and of the padding distribution."""

from __future__ import annotations

import itertools
import math

from torch import Tensor

from flows.config import FlowConfig
from flows.groups import FieldTypes, enn
from flows.layers.base import EquivariantNet
from flows.lipschitz import LipschitzConv2d, LipschitzLinear
from flows.nonlinearities import LipSwish, NormSoftThreshold
from flows.steerable import SteerableConv2d, SteerableLinear

__all__ = [
    "POINT_RESIDUAL_LIPSWISH_BETA",
    "build_conditioner",
    "build_subnet",
    "residual_lipswish_beta",
]

# The initial LipSwish beta of residual branches on points, per unit of hidden field size. A
# residual branch's layers have operator norm <= c < 1, so its pre-activations span no more than
# the (ActNorm-standardised, unit mean square) data: with beta = 1 LipSwish is nearly quadratic
# over that range and g can only make smooth, low-frequency displacements. Clusters a fraction of
# the data's spread wide (8 Gaussians: std 0.18 after ActNorm) need a sharper bend: measured on
# 8 Gaussians (D8, width 8, depth 4, 600 steps, batch 256, lr 3e-3), KL 0.59 nats with beta 1
# and 0.13 with beta 8.
POINT_RESIDUAL_LIPSWISH_BETA = 8.0


def residual_lipswish_beta(hidden: enn.FieldType, is_points: bool) -> float:
    """The initial LipSwish beta after a hidden layer of ``hidden`` fields in a residual branch.

    beta_0 * sqrt(field size), with beta_0 = POINT_RESIDUAL_LIPSWISH_BETA on points and 1 on
    images (whose branches see many pixels through their kernels). An equivariant map into
    fields of size m (m = |G| for regular fields) has W^T W = (m / d) sum_f |w_f|^2 I on a
    d-dimensional irreducible input: the norm bound spreads |x| over m copies of each unit, so a
    unit's pre-activation is sqrt(m) times smaller than a trivial field's at the same operator
    norm, and the bend must be sqrt(m) times sharper to act at the same place in data space.
    Measured on 8 Gaussians (width 8, depth 4, 600 steps, batch 256, lr 1e-3): D8 regular fields
    (m = 16) reach KL 0.28 / 0.17 / 0.11 / 0.09 nats at beta 8 / 16 / 32 / 64 while trivial
    fields (m = 1) reach 0.25 / 0.25 / 0.35 at beta 8 / 16 / 32; C8 (m = 8) 0.15 at beta 8 and
    0.10 at 22.6. On D4 digits (E-Resflow width 3, 400 steps) 4.998 bpd at beta 1 and 4.922 at
    sqrt(8).
    """
    field_size = hidden.size // len(hidden)
    base = POINT_RESIDUAL_LIPSWISH_BETA if is_points else 1.0
    return base * math.sqrt(field_size)


def _nonlinearity(
    field_type: enn.FieldType, config: FlowConfig, pointwise: bool, beta: float = 1.0
) -> enn.EquivariantModule:
    if not pointwise:
        return NormSoftThreshold(field_type)
    if config.activation == "elu":
        return enn.ELU(field_type)
    return LipSwish(field_type, beta)


def build_subnet(types: FieldTypes, config: FlowConfig) -> EquivariantNet:
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
            beta = residual_lipswish_beta(out_type, config.is_points)
            modules.append(_nonlinearity(out_type, config, types.pointwise, beta))
    return EquivariantNet(*modules)


def build_conditioner(
    types: FieldTypes,
    in_type: enn.FieldType,
    out_type: enn.FieldType,
    config: FlowConfig,
    field_masks: list[Tensor] | None = None,
    last_kernel_size: int | None = None,
) -> EquivariantNet:
    """An unconstrained equivariant network in_type -> hidden -> ... -> out_type.

    Used for the s and t of coupling and autoregressive layers, so it needs no Lipschitz bound.
    Images use the configured kernel size in every layer (the receptive field is what lets a
    coupling layer model correlations); the last layer starts at zero, so every such layer
    starts as the identity.

    Arguments:
        field_masks: one (out fields, in fields) mask per linear layer (autoregressive order).
        last_kernel_size: images: the last layer's kernel size (default: the configured one).
    """
    widths = [in_type] + [types.hidden] * config.hidden_layers + [out_type]
    n_linear = len(widths) - 1
    if field_masks is not None and len(field_masks) != n_linear:
        raise ValueError(f"{len(field_masks)} field masks for {n_linear} layers")
    modules: list[enn.EquivariantModule] = []
    for position, (layer_in, layer_out) in enumerate(itertools.pairwise(widths)):
        mask = None if field_masks is None else field_masks[position]
        last = position == n_linear - 1
        if config.is_points:
            modules.append(SteerableLinear(layer_in, layer_out, field_mask=mask, zero_init=last))
        else:
            kernel = config.kernel_size
            if last and last_kernel_size is not None:
                kernel = last_kernel_size
            modules.append(
                SteerableConv2d(layer_in, layer_out, kernel, field_mask=mask, zero_init=last)
            )
        if not last:
            modules.append(_nonlinearity(layer_out, config, types.pointwise))
    return EquivariantNet(*modules)
