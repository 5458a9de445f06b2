"""LipSwish stays 1-Lipschitz at every beta; residual branches start at beta_0 sqrt(field size)."""

from __future__ import annotations

import pytest
import torch

from flows import FlowConfig, build_flow
from flows.groups import build_field_types
from flows.nonlinearities import LipSwish
from flows.subnets import POINT_RESIDUAL_LIPSWISH_BETA


@pytest.mark.parametrize("beta", [0.1, 1.0, 8.0, 50.0])
def test_lipswish_is_one_lipschitz_at_every_beta(beta: float) -> None:
    types = build_field_types(FlowConfig(family="residual", group="C4", data_shape=[2], width=1))
    layer = LipSwish(types.hidden, beta).double()
    x = torch.linspace(-20, 20, 400_001, dtype=torch.float64)
    y = layer.export()(x)
    slopes = y.diff() / x.diff()
    assert float(slopes.abs().max()) <= 1.0
    # ... and not by much: the bound is nearly attained, so the 1.1 is not slack.
    assert float(slopes.abs().max()) > 0.99


def test_residual_branches_start_with_a_lipswish_as_sharp_as_the_field_size_needs() -> None:
    def betas(config: FlowConfig) -> set[float]:
        flow = build_flow(config)
        return {
            round(float(torch.nn.functional.softplus(m.raw_beta)), 6)
            for m in flow.modules()
            if isinstance(m, LipSwish)
        }

    # Regular D8 fields (16 values) and trivial fields: beta_0 * sqrt(field size).
    assert betas(FlowConfig(family="residual", group="D8", data_shape=[2], depth=1)) == {
        round(POINT_RESIDUAL_LIPSWISH_BETA * 4.0, 6)
    }
    assert betas(FlowConfig(family="residual", group="trivial", data_shape=[2], depth=1)) == {
        POINT_RESIDUAL_LIPSWISH_BETA
    }
    # Images: beta_0 = 1, times sqrt(4) for regular C4 fields.
    assert betas(FlowConfig(family="residual", group="C4", data_shape=[1, 4, 4], depth=1)) == {2.0}
    assert betas(
        FlowConfig(family="residual", group="trivial", data_shape=[1, 4, 4], depth=1)
    ) == {1.0}
