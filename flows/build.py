"""Builds a :class:`~flows.flow.Flow` from a :class:`~flows.config.FlowConfig`."""

from __future__ import annotations

import torch

from flows.config import FlowConfig
from flows.flow import Flow
from flows.groups import build_field_types
from flows.layers import EquivariantActNorm, FlowLayer, LogitTransform, ResidualBlock
from flows.subnets import build_subnet

__all__ = ["build_flow"]


def build_flow(config: FlowConfig, seed: int = 0) -> Flow:
    """Builds the flow that ``config`` describes, with weights drawn from ``seed``.

    Images: logit transform (if ``logit_alpha`` is set), then ``depth`` times [ActNorm, G-residual
    block], then a final ActNorm. Points: the same without the logit transform.

    Example:
        >>> from flows import FlowConfig, build_flow
        >>> flow = build_flow(FlowConfig(group="C4", data_shape=[2], depth=2, width=4))
        >>> flow.log_prob(torch.zeros(3, 2), method="exact").shape
        torch.Size([3])
    """
    types = build_field_types(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layers: list[FlowLayer] = []
        if not config.is_points and config.logit_alpha is not None:
            layers.append(LogitTransform(config.logit_alpha))
        for _ in range(config.depth):
            if config.actnorm:
                layers.append(EquivariantActNorm(types.data))
            block = ResidualBlock(
                build_subnet(types, config),
                types.data,
                atol=config.inverse_atol,
                max_iter=config.inverse_max_iter,
            )
            layers.append(block)
        if config.actnorm:
            layers.append(EquivariantActNorm(types.data))
    return Flow(config, layers)
