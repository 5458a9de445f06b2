"""Mathematical claims of the polar spline flow of 2-D points, one parametrised test per claim."""

from __future__ import annotations

import pytest
import torch

from flows import FlowConfig
from flows.metrics import equivariance_error
from flows.symmetry import point_symmetries

from .conftest import density_integral, make_flow

GROUPS = ["trivial", "C2", "C3", "C8", "D1", "D4", "D8", "SO2", "O2"]
SMALL = {"family": "polar", "depth": 2, "width": 4, "spline_bins": 5}


def polar_flow(group: str, scale: float = 1.0):
    return make_flow(group=group, data_shape=[2], scale=scale, **SMALL)


def points(n: int = 16, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return 2.0 * torch.randn(n, 2, generator=generator, dtype=torch.float64)


@pytest.mark.parametrize("group", GROUPS)
def test_inverse_recovers_input(group: str) -> None:
    flow = polar_flow(group)
    x = points()
    with torch.no_grad():
        z, _ = flow.transform(x)
    x_back, report = flow.inverse_with_info(z)
    # Steep spline bins (derivatives down to 1e-3) amplify the round-off of the inverse.
    torch.testing.assert_close(x_back, x, atol=1e-7, rtol=0)
    assert report.layers == ()  # analytic inverses: no iterations
    angle_change = torch.atan2(z[:, 1], z[:, 0]) - torch.atan2(x[:, 1], x[:, 0])
    # Not an identity-like map: radii move, and angles too where the group allows it.
    assert float((z.norm(dim=1) - x.norm(dim=1)).abs().max()) > 1e-2
    if group not in ("SO2", "O2"):
        assert float(angle_change.abs().max()) > 1e-2


@pytest.mark.parametrize("group", GROUPS)
def test_logdet_matches_brute_force_jacobian(group: str) -> None:
    flow = polar_flow(group)
    x = points(n=4)
    _, logdet = flow.transform(x)
    for item in range(len(x)):

        def latent(v: torch.Tensor) -> torch.Tensor:
            return flow.transform(v.reshape(1, 2))[0].reshape(-1)

        jacobian = torch.autograd.functional.jacobian(latent, x[item])
        brute_force = torch.linalg.slogdet(jacobian).logabsdet
        assert abs(float(brute_force - logdet[item].detach())) < 1e-7


@pytest.mark.parametrize("group", [g for g in GROUPS if g != "trivial"])
def test_density_is_exactly_invariant(group: str) -> None:
    flow = polar_flow(group)
    assert len(point_symmetries(group)) > 1
    # Float64 round-off of atan2 and of the rotation matrices only.
    assert equivariance_error(flow, points()) <= 1e-9


@pytest.mark.parametrize(
    ("model_group", "test_group"), [("trivial", "C8"), ("trivial", "D1"), ("C8", "D8")]
)
def test_less_symmetric_models_violate_invariance(model_group: str, test_group: str) -> None:
    """Negative controls: C1 is not rotation invariant, and C8 is not reflection invariant."""
    flow = polar_flow(model_group)
    assert equivariance_error(flow, points(), group=test_group) > 1e-3


@pytest.mark.parametrize("group", ["trivial", "C4", "D8", "O2"])
def test_point_density_integrates_to_one(group: str) -> None:
    flow = polar_flow(group, scale=0.5)
    assert abs(density_integral(flow, 700) - 1.0) < 0.01


def test_the_origin_is_a_fixed_point_with_a_finite_density() -> None:
    flow = polar_flow("D8")
    origin = torch.zeros(2, 2, dtype=torch.float64)
    z, logdet = flow.transform(origin)
    assert torch.equal(z, origin)
    assert torch.isfinite(logdet).all()
    assert torch.equal(flow.inverse(origin), origin)


def test_polar_is_the_default_for_2d_points_and_nsf_for_images() -> None:
    assert FlowConfig(group="D8", data_shape=[2]).family == "polar"
    assert FlowConfig(group="trivial", data_shape=[3]).family == "residual"
    assert FlowConfig(group="C4", data_shape=[2], padding_channels=1).family == "residual"
    assert FlowConfig(group="C4", data_shape=[1, 8, 8]).family == "nsf"
    assert FlowConfig(group="C4", data_shape=[1, 2, 2]).family == "residual"
    explicit = FlowConfig(family="residual", group="D8", data_shape=[2])
    assert FlowConfig.model_validate_json(explicit.model_dump_json()).family == "residual"


@pytest.mark.parametrize(
    "fields", [{"data_shape": [3], "group": "trivial"}, {"data_shape": [2], "padding_channels": 1}]
)
def test_polar_rejects_other_data(fields: dict) -> None:
    with pytest.raises(ValueError, match="family 'polar' models 2-D points"):
        FlowConfig(family="polar", **fields)
