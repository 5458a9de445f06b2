"""The G-NSF's own claims: its pixel split is a union of symmetry orbits (the ordinary
checkerboard is not), and a spline flow's density integrates to one."""

from __future__ import annotations

import itertools

import pytest
import torch

from flows.config import FlowConfig
from flows.layers.coupling import checkerboard_mask
from flows.layers.spline import orbit_mask
from flows.symmetry import grid_symmetries

from .conftest import make_flow


@pytest.mark.parametrize("size", [3, 4, 5, 8])
def test_orbit_mask_is_invariant_under_every_grid_symmetry(size: int) -> None:
    for parity in (0, 1):
        mask = orbit_mask(size, size, parity)
        assert 0 < int(mask.sum()) < size * size
        for element in grid_symmetries("D4"):
            assert torch.equal(element(mask), mask)
    assert torch.equal(
        orbit_mask(size, size, 0) + orbit_mask(size, size, 1), torch.ones_like(mask)
    )


def test_checkerboard_mask_is_not_invariant_on_an_even_grid() -> None:
    mask = checkerboard_mask(8, 8, 0)
    assert not torch.equal(torch.rot90(mask, 1, dims=(-2, -1)), mask)


def test_spline_flow_density_integrates_to_one() -> None:
    # Three pixels in a row (the flip D1 acts on them), integrated on a 3-D midpoint grid. No
    # logit transform: with alpha > 0 it maps [0, 1] onto a bounded interval only.
    flow = make_flow(
        group="D1",
        data_shape=[1, 1, 3],
        family="mixed",
        blocks=["spline", "nsf"],
        depth=1,
        width=2,
        spline_bins=4,
        spline_bound=2.0,
        logit_alpha=None,
    )
    # The flow's raw support: Flow.sample clamps images to [0, 1].
    latents = torch.randn(4000, *flow.latent_shape, generator=torch.Generator().manual_seed(0))
    half_width = 1.3 * float(flow.inverse(latents.double()).abs().max())
    n = 64
    step = 2 * half_width / n
    axis = -half_width + step * (torch.arange(n, dtype=torch.float64) + 0.5)
    grid = torch.cartesian_prod(axis, axis, axis).reshape(-1, 1, 1, 3)
    with torch.no_grad():
        density = torch.cat([flow.log_prob(chunk).exp() for chunk in grid.split(100_000)])
    assert abs(float(density.sum()) * step**3 - 1.0) < 0.02


def test_nsf_is_the_image_default_with_a_small_logit_alpha_unless_given() -> None:
    default = FlowConfig(group="D4", data_shape=[1, 8, 8])
    assert default.family == "nsf" and default.logit_alpha == 1e-6
    assert FlowConfig(group="D4", data_shape=[1, 8, 8], logit_alpha=0.05).logit_alpha == 0.05
    assert FlowConfig(family="residual", group="D4", data_shape=[1, 8, 8]).logit_alpha == 0.05
    assert FlowConfig.model_validate_json(default.model_dump_json()) == default


def test_cosine_schedule_warms_up_then_decays_to_zero() -> None:
    from flows.config import TrainConfig
    from flows.training import scheduled_learning_rate

    config = TrainConfig(steps=110, learning_rate=0.01, warmup_steps=10, lr_schedule="cosine")
    rates = [scheduled_learning_rate(config, step) for step in range(110)]
    assert rates[0] == pytest.approx(0.001) and rates[10] == pytest.approx(0.01)
    assert rates[60] == pytest.approx(0.005)
    assert all(later < earlier for earlier, later in itertools.pairwise(rates[10:]))
    assert rates[-1] < 1e-5
    constant = config.model_copy(update={"lr_schedule": "constant"})
    assert scheduled_learning_rate(constant, 109) == 0.01
