"""The fixed-point inverse stops per item, budgets iterations from L, reports per-item bounds."""

from __future__ import annotations

import math

import torch

from flows.layers import ResidualBlock
from tests.flows.conftest import make_flow


def residual_blocks(flow) -> list[ResidualBlock]:  # type: ignore[no-untyped-def]
    return [layer for layer in flow.layers if isinstance(layer, ResidualBlock)]


def test_each_item_stops_at_its_own_tolerance_and_its_bound_holds() -> None:
    flow = make_flow(
        family="residual", group="C4", data_shape=[2], width=4, depth=2, lipschitz_coeff=0.9
    )
    block = residual_blocks(flow)[0]
    generator = torch.Generator().manual_seed(0)
    # Items near the origin need few iterations; far ones many.
    y = torch.cat(
        [
            1e-6 * torch.randn(3, 2, generator=generator, dtype=torch.float64),
            5.0 * torch.randn(3, 2, generator=generator, dtype=torch.float64),
        ]
    )
    x, info = block.inverse_with_info(y)
    assert info.item_iterations is not None and info.item_error_bounds is not None
    assert int(info.item_iterations[:3].max()) < int(info.item_iterations[3:].min())
    assert info.iterations == int(info.item_iterations.max())
    lipschitz = info.lipschitz
    residual = (x + block.g(x) - y).norm(dim=1)
    # ||x - f^-1(y)|| >= ||f(x) - y|| / (1 + L): the certified bound must cover that much.
    assert bool((residual / (1 + lipschitz) <= info.item_error_bounds * (1 + 1e-9) + 1e-15).all())
    # Each item alone gives the same x as in the batch (no item waits for the slowest).
    for i in range(len(y)):
        alone, _ = block.inverse_with_info(y[i : i + 1])
        torch.testing.assert_close(alone[0], x[i], rtol=1e-12, atol=1e-12)


def test_the_iteration_budget_follows_from_the_lipschitz_bound() -> None:
    flow = make_flow(
        family="residual", group="C4", data_shape=[2], width=4, depth=2, lipschitz_coeff=0.9
    )
    block = residual_blocks(flow)[0]
    first_step = torch.tensor([1.0, 1e-3], dtype=torch.float64)
    tolerance = torch.tensor([1e-8, 1e-8], dtype=torch.float64)
    budget = block.iteration_budget(first_step, tolerance, 0.5)
    # 0.5^(n-1) * 1.0 * (0.5 / 0.5) <= 1e-8  ->  n - 1 >= log2(1e8) = 26.6
    expected = 1 + math.ceil(math.log(1e-8) / math.log(0.5))
    assert int(budget[0]) == min(block.max_iter, expected + 5)
    assert int(budget[1]) < int(budget[0])  # a smaller first step needs fewer


def test_the_report_gives_each_samples_bound() -> None:
    flow = make_flow(
        family="residual", group="C4", data_shape=[2], width=4, depth=2, lipschitz_coeff=0.9
    )
    z = torch.randn(5, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    _, report = flow.inverse_with_info(z)
    bounds = report.item_error_bounds
    assert bounds is not None and bounds.shape == (5,)
    assert math.isclose(float(bounds.max()), report.max_error_bound)
