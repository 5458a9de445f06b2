"""Builds a :class:`~flows.flow.Flow` from a :class:`~flows.config.FlowConfig`."""

from __future__ import annotations

import torch

from flows.config import FlowConfig
from flows.flow import Flow
from flows.groups import FieldTypes, build_field_types, enn
from flows.layers import (
    CheckerboardCoupling,
    EquivariantActNorm,
    FieldCoupling,
    FieldMixing,
    FlowLayer,
    GroupAutoregressive,
    IsotropicActNorm,
    LogitTransform,
    PolarSplineBlock,
    ResidualBlock,
)
from flows.layers.autoregressive import autoregressive_field_masks
from flows.layers.coupling import checkerboard_mask
from flows.layers.linear import build_conv_exponential, mixable_field_groups
from flows.layers.spline import (
    ElementwiseSpline,
    SplineCoupling,
    orbit_mask,
    spline_parameter_count,
)
from flows.padding import PaddingDistribution
from flows.subnets import build_conditioner, build_subnet

__all__ = ["build_flow"]


def _grid(config: FlowConfig) -> tuple[int, int] | None:
    return None if config.is_points else (config.data_shape[1], config.data_shape[2])


def _residual(types: FieldTypes, config: FlowConfig, index: int) -> list[FlowLayer]:
    net = build_subnet(types, config)
    block = ResidualBlock(
        net,
        atol=config.inverse_atol,
        max_iter=config.inverse_max_iter,
        rtol=config.inverse_rtol,
    )
    return [block]


def _coupling(types: FieldTypes, config: FlowConfig, index: int) -> list[FlowLayer]:
    if config.coupling_split == "checkerboard":
        height, width = _grid(config)  # type: ignore[misc]
        net = build_conditioner(types, types.data, types.data + types.data, config)
        mask = checkerboard_mask(height, width, parity=index % 2)
        return [CheckerboardCoupling(net, mask, config.scale_bound)]
    kept, transformed = config.coupling_fields(index)
    moved_type = types.subtype(transformed)
    net = build_conditioner(types, types.subtype(kept), moved_type + moved_type, config)
    return [FieldCoupling(net, kept, transformed, config.scale_bound)]


def _iaf(types: FieldTypes, config: FlowConfig, index: int) -> list[FlowLayer]:
    n_blocks = config.iaf_block_count
    size = config.n_fields // n_blocks
    blocks = [list(range(b * size, (b + 1) * size)) for b in range(n_blocks)]
    if index % 2 == 1:
        # Alternate the order, so that every block is conditioned on the others somewhere.
        blocks = blocks[::-1]
    position = {f: rank + 1 for rank, block in enumerate(blocks) for f in block}
    masks = autoregressive_field_masks(
        [position[f] for f in range(config.n_fields)],
        len(types.hidden),
        config.hidden_layers,
        n_blocks,
    )
    net = build_conditioner(types, types.data, types.data + types.data, config, masks)
    return [GroupAutoregressive(net, blocks, config.scale_bound, config.iaf_fast)]


def _linear(types: FieldTypes, config: FlowConfig, index: int) -> list[FlowLayer]:
    layers: list[FlowLayer] = [
        build_conv_exponential(
            types.data, _grid(config), config.kernel_size, config.lipschitz_coeff
        )
    ]
    if mixable_field_groups(types.data):
        layers.append(FieldMixing(types.data))
    return layers


def _nsf(types: FieldTypes, config: FlowConfig, index: int) -> list[FlowLayer]:
    height, width = _grid(config)  # type: ignore[misc]
    gspace = types.data.gspace
    in_type = types.data + enn.FieldType(gspace, [gspace.trivial_repr])
    n_out = config.latent_shape[0] * spline_parameter_count(config.spline_bins)
    out_type = enn.FieldType(gspace, [gspace.trivial_repr] * n_out)
    # The last layer is the widest (3K - 1 outputs per channel): its kernel is its own setting.
    net = build_conditioner(
        types, in_type, out_type, config, last_kernel_size=config.spline_head_kernel
    )
    mask = orbit_mask(height, width, parity=index % 2)
    return [SplineCoupling(net, mask, config.spline_bins, config.spline_bound)]


def _spline(types: FieldTypes, config: FlowConfig, index: int) -> list[FlowLayer]:
    return [ElementwiseSpline(config.n_fields, config.spline_bins, config.spline_bound)]


BLOCK_BUILDERS = {
    "residual": _residual,
    "coupling": _coupling,
    "iaf": _iaf,
    "linear": _linear,
    "nsf": _nsf,
    "spline": _spline,
}


def _polar_flow(config: FlowConfig) -> Flow:
    """An invariant scale (standardising the data), then ``depth`` polar spline blocks."""
    layers: list[FlowLayer] = [IsotropicActNorm()] if config.actnorm else []
    layers += [
        PolarSplineBlock(
            config.group_kind,
            config.group_order,
            hidden=config.width,
            hidden_layers=config.hidden_layers,
            bins=config.spline_bins,
            harmonics=config.max_frequency,
        )
        for _ in range(config.depth)
    ]
    return Flow(config, layers)


def build_flow(config: FlowConfig, seed: int = 0) -> Flow:
    """Builds the flow that ``config`` describes, with weights drawn from ``seed``.

    Images: logit transform (if ``logit_alpha`` is set), then ``depth`` times the block pattern
    (one block of ``family``, or ``blocks`` for ``mixed``), each block after an ActNorm, then a
    final ActNorm. Points: the same without the logit transform; family ``polar``: an invariant
    scale, then ``depth`` polar spline blocks. Augmented flows
    (``padding_channels`` > 0) get a padding distribution, and their blocks act on the data and
    the padding together.

    Example:
        >>> from flows import FlowConfig, build_flow
        >>> flow = build_flow(FlowConfig(group="C4", data_shape=[2], depth=2, width=4))
        >>> flow.log_prob(torch.zeros(3, 2), method="exact").shape
        torch.Size([3])
    """
    if config.family == "polar":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return _polar_flow(config)
    types = build_field_types(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layers: list[FlowLayer] = []
        if not config.is_points and config.logit_alpha is not None:
            layers.append(LogitTransform(config.logit_alpha, channels=config.data_shape[0]))
        for block in config.block_plan:
            if config.actnorm:
                layers.append(EquivariantActNorm(types.data))
            layers += BLOCK_BUILDERS[block.kind](types, config, block.index)
        if config.actnorm:
            layers.append(EquivariantActNorm(types.data))
        padding = None
        if types.padding is not None:
            net = build_conditioner(types, types.observed, types.padding + types.padding, config)
            padding = PaddingDistribution(net, config.padding_channels, config.scale_bound)
    return Flow(config, layers, padding)
