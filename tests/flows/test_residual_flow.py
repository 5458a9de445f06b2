"""Mathematical claims of G-residual flows, one parametrised test per claim.

The claims every family shares (the inverse round trip, the log-det against the brute-force
Jacobian, invariance on the grid groups, a trivial counterpart that breaks it, checkpoint and
export) are tested for the residual family in ``test_families.py``, on images; here are the
residual flow's own: its certified fixed-point inverse, 2-D points under every point group,
image groups beyond the grid's (C8, D8, SO2, O2), the log-det estimator and the Lipschitz bound.
"""

from __future__ import annotations

import math

import pytest
import torch

from flows import FlowConfig, InverseNotConverged, build_flow
from flows.lipschitz import dense_operator_norm
from flows.metrics import average_group_bpd, bits_per_dim, equivariance_error
from flows.symmetry import grid_symmetries, point_symmetries

from .conftest import density_integral, image_batch, make_flow

POINT_GROUPS = ["C2", "C3", "C4", "C8", "D1", "D2", "D4", "D8", "SO2", "O2"]
GRID_GROUPS = ["C2", "C4", "D1", "D2", "D4"]
SMALL = {"family": "residual", "depth": 2, "width": 2}


def point_flow(group: str):
    return make_flow(group=group, data_shape=[2], **SMALL)


def image_flow(group: str, size: int = 5):
    return make_flow(group=group, data_shape=[1, size, size], **SMALL)


ALL_FLOWS = [("points", g) for g in ["trivial", *POINT_GROUPS]] + [
    ("images", g) for g in ["trivial", *GRID_GROUPS, "C8", "SO2"]
]


def flow_and_batch(kind: str, group: str):
    if kind == "points":
        flow = point_flow(group)
        x = 2.0 * torch.randn(
            4, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64
        )
    else:
        flow = image_flow(group)
        x = image_batch(flow)
    return flow, x


@pytest.mark.parametrize(("kind", "group"), ALL_FLOWS)
def test_inverse_converges_within_its_certified_bound(kind: str, group: str) -> None:
    flow, x = flow_and_batch(kind, group)
    z, _ = flow.transform(x, method="exact")
    x_back, report = flow.inverse_with_info(z)
    assert torch.allclose(x_back, x, atol=1e-4)
    assert 0 < report.max_iterations <= flow.config.inverse_max_iter
    tolerance = flow.config.inverse_atol + 1e-6 * float(
        z.detach().reshape(len(z), -1).norm(dim=1).max()
    )
    assert report.max_error_bound <= tolerance


@pytest.mark.parametrize("group", ["trivial", *POINT_GROUPS])
def test_exact_logdet_of_points_matches_brute_force_jacobian(group: str) -> None:
    flow, x = flow_and_batch("points", group)
    _, logdet = flow.transform(x[:2], method="exact")
    for item in range(2):

        def latent(v: torch.Tensor, item: int = item) -> torch.Tensor:
            return flow.transform(v.reshape(1, *flow.data_shape), method="exact")[0].reshape(-1)

        jacobian = torch.autograd.functional.jacobian(latent, x[item].reshape(-1))
        brute_force = torch.linalg.slogdet(jacobian).logabsdet
        assert abs(float(brute_force - logdet[item].detach())) < 1e-6


@pytest.mark.parametrize(("kind", "group"), ALL_FLOWS)
def test_samples_have_finite_log_prob(kind: str, group: str) -> None:
    flow, _ = flow_and_batch(kind, group)
    samples = flow.sample(4, seed=3)
    assert samples.shape == (4, *flow.data_shape)
    assert torch.isfinite(flow.log_prob(samples, method="exact")).all()
    assert torch.equal(samples, flow.sample(4, seed=3))


@pytest.mark.parametrize("group", POINT_GROUPS)
def test_point_density_is_exactly_invariant(group: str) -> None:
    flow = point_flow(group)
    x = 2.0 * torch.randn(16, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert len(point_symmetries(group)) > 1
    assert equivariance_error(flow, x) <= 1e-4


# The grid groups themselves (C2, C4, D1, D2, D4) are in test_families.py.
@pytest.mark.parametrize("group", ["C8", "D8", "SO2", "O2"])
def test_image_density_is_exactly_invariant_under_the_exact_grid_subgroup(group: str) -> None:
    flow = image_flow(group)
    x = image_batch(flow, n=4)
    assert len(grid_symmetries(group)) > 1
    assert equivariance_error(flow, x) <= 1e-4


def test_trivial_point_baseline_violates_invariance() -> None:
    flow, x = flow_and_batch("points", "trivial")
    assert equivariance_error(flow, x, group="D8") > 1e-3


def test_rectangular_images_with_flips() -> None:
    flow = make_flow(group="D2", data_shape=[1, 4, 6], **SMALL)
    assert equivariance_error(flow, image_batch(flow)) <= 1e-4


# The slowest cases of tests/flows (a 700 x 700 grid through a residual flow each, ~25 s together).
@pytest.mark.slow
@pytest.mark.parametrize("group", ["trivial", "C4", "D8", "O2"])
@pytest.mark.parametrize("scale", [0.3, 1.0])
def test_point_density_integrates_to_one(group: str, scale: float) -> None:
    flow = make_flow(family="residual", group=group, data_shape=[2], depth=3, width=3, scale=scale)
    assert abs(density_integral(flow, 700) - 1.0) < 0.01


def test_estimator_is_unbiased_within_its_standard_error() -> None:
    flow = image_flow("C4", size=4)
    x = image_batch(flow, n=3)
    exact = flow.log_prob(x, method="exact")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        estimate, stderr = flow.log_prob_with_stderr(
            x, method="estimate", generator=generator, n_probes=400
        )
    assert (stderr > 0).all()
    assert ((estimate - exact).abs() <= 4 * stderr + 1e-6).all(), (estimate, exact, stderr)


def test_training_estimator_has_the_exact_gradient_in_expectation() -> None:
    flow = build_flow(
        FlowConfig(family="residual", group="C4", data_shape=[1, 3, 3], depth=1, width=1)
    ).double()
    x = torch.rand(2, 1, 3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    parameters = [p for p in flow.parameters() if p.requires_grad]

    def gradient(method: str, generator=None) -> torch.Tensor:
        flow.zero_grad()
        flow.transform(x, method=method, generator=generator)[1].sum().backward()
        return torch.cat([p.grad.reshape(-1) for p in parameters if p.grad is not None])

    exact = gradient("exact")
    generator = torch.Generator().manual_seed(1)
    draws = torch.stack([gradient("estimate", generator) for _ in range(300)])
    mean, stderr = draws.mean(0), draws.std(0) / math.sqrt(len(draws))
    assert ((mean - exact).abs() <= 5 * stderr + 1e-6).all()


def test_every_layer_sigma_is_below_c_even_for_huge_weights() -> None:
    flow = build_flow(
        FlowConfig(family="residual", group="D4", data_shape=[1, 5, 5], depth=2, width=1)
    )
    with torch.no_grad():
        for layer in flow.lipschitz_layers():
            layer.conv.weights.mul_(30.0)
    c = flow.config.lipschitz_coeff
    assert flow.audit_lipschitz().certified <= c * (1 + 1e-6)
    for layer in flow.lipschitz_layers():
        assert dense_operator_norm(layer) <= c * (1 + 1e-6)


def test_inverse_that_cannot_converge_raises() -> None:
    config = FlowConfig(
        family="residual",
        group="C4",
        data_shape=[2],
        depth=1,
        inverse_max_iter=1,
        inverse_atol=1e-12,
    )
    flow = build_flow(config).double()
    with torch.no_grad():
        for layer in flow.lipschitz_layers():
            layer.linear.weights.mul_(50.0)
    with pytest.raises(InverseNotConverged, match="did not converge"):
        flow.inverse(torch.randn(3, 2, dtype=torch.float64))


def test_train_and_eval_modes_give_the_same_density() -> None:
    flow = image_flow("C4")
    x = image_batch(flow)
    eval_lp = flow.log_prob(x, method="exact")
    flow.train()
    try:
        train_lp = flow.log_prob(x, method="exact")
        assert torch.equal(train_lp, flow.log_prob(x, method="exact"))
    finally:
        flow.eval()
    assert torch.allclose(train_lp, eval_lp, atol=1e-12)


def test_bits_per_dim_formula() -> None:
    log_prob = torch.tensor([64 * math.log(256.0)])
    assert float(bits_per_dim(log_prob, 64)) == pytest.approx(0.0)
    assert float(bits_per_dim(torch.tensor([0.0]), 64)) == pytest.approx(8.0)


def test_average_group_bpd_of_an_invariant_model_equals_its_bpd() -> None:
    flow = image_flow("D4")
    x = image_batch(flow)
    with torch.no_grad():
        bpd = float(bits_per_dim(flow.log_prob(x, method="exact"), flow.dim).mean())
    assert average_group_bpd(flow, x, "D4", method="exact") == pytest.approx(bpd, abs=1e-6)


@pytest.mark.parametrize(
    ("group", "subgroup", "size"),
    [
        ("C8", "C4", 4),
        ("D8", "D4", 8),
        ("C6", "C2", 2),
        ("D3", "D1", 2),
        ("C3", "trivial", 1),
        ("SO2", "C4", 4),
        ("O2", "D4", 8),
        ("trivial", "trivial", 1),
    ],
)
def test_exact_grid_subgroups(group: str, subgroup: str, size: int) -> None:
    from flows.symmetry import exact_grid_subgroup

    assert exact_grid_subgroup(group) == subgroup
    elements = grid_symmetries(group)
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    images = {tuple(element(x).reshape(-1).tolist()) for element in elements}
    assert len(elements) == size and len(images) == size  # distinct elements, identity first
    assert torch.equal(elements[0](x), x)
