"""Shared fixtures: flows are expensive to build (escnn bases), so build each config once."""

from __future__ import annotations

import functools

import pytest
import torch

from flows import Flow, FlowConfig, build_flow
from flows.layers import EquivariantActNorm


def perturb(flow: Flow, scale: float, seed: int) -> Flow:
    """Gives every parameter random values so that tests do not pass by an identity-like init."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in flow.parameters():
            noise = torch.randn(parameter.shape, generator=generator, dtype=torch.float64)
            parameter.add_(scale * noise.to(parameter.dtype))
        # As after training: ActNorm must not re-initialise itself from the next batch.
        for layer in flow.layers:
            if isinstance(layer, EquivariantActNorm):
                layer.initialized.fill_(True)
    return flow


@functools.cache
def _cached_flow(config_json: str, scale: float) -> Flow:
    config = FlowConfig.model_validate_json(config_json)
    flow = build_flow(config, seed=1).double()
    perturb(flow, scale, seed=2)
    flow.refresh_lipschitz()
    return flow.eval()


def make_flow(scale: float = 0.3, **config: object) -> Flow:
    """A float64 flow in eval mode with perturbed weights and converged Lipschitz bounds."""
    return _cached_flow(FlowConfig(**config).model_dump_json(), scale)


@pytest.fixture(scope="session")
def flow_factory():
    return make_flow
