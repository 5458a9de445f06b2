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
    return flow.eval()


def make_flow(scale: float = 0.3, **config: object) -> Flow:
    """A float64 flow in eval mode with perturbed weights (its Lipschitz bounds always hold)."""
    return _cached_flow(FlowConfig(**config).model_dump_json(), scale)


def image_batch(flow: Flow, n: int = 3, seed: int = 0) -> torch.Tensor:
    """n float64 images in [0, 1] shaped like the flow's data."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, *flow.data_shape, generator=generator, dtype=torch.float64)


def density_integral(flow: Flow, n: int) -> float:
    """The integral of a 2-D point flow's density over an n x n grid (a Riemann sum).

    The box must hold the whole mass: it is sized from the model's own samples.
    """
    half_width = max(8.0, 1.5 * float(flow.sample(4000, seed=0).abs().max()))
    axis = torch.linspace(-half_width, half_width, n, dtype=torch.float64)
    grid = torch.cartesian_prod(axis, axis)
    with torch.no_grad():
        density = torch.cat([flow.log_prob(chunk).exp() for chunk in grid.split(50_000)])
    return float(density.sum() * (axis[1] - axis[0]) ** 2)


@pytest.fixture(scope="session")
def flow_factory():
    return make_flow
