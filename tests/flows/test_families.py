"""Mathematical claims of every flow family, one parametrised test per claim.

Adding a family costs a line in ``FAMILIES``. Everything runs in float64 with perturbed weights
(so no test passes by an identity-like initialisation).
"""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from flows import FlowConfig, build_flow
from flows.checkpoint import load_flow, save_checkpoint
from flows.metrics import equivariance_error
from flows.symmetry import grid_symmetries

from .conftest import density_integral, image_batch, make_flow

SMALL = {"depth": 2, "width": 2}
# family name -> config fields on top of group and data_shape (images: 3 channels)
FAMILIES = {
    "residual": {"family": "residual"},
    "coupling": {"family": "coupling"},
    "iaf": {"family": "iaf"},
    "iaf-density-fast": {"family": "iaf", "iaf_fast": "density"},
    "linear": {"family": "linear"},
    "mixed": {"family": "mixed", "blocks": ["linear", "coupling", "iaf", "residual"], "depth": 1},
    "nsf": {"family": "nsf", "spline_bins": 4, "spline_bound": 2.0},
    "mixed-splines": {"family": "mixed", "blocks": ["spline", "nsf"], "spline_bins": 3},
    "augmented-residual": {"family": "residual", "padding_channels": 1},
    "augmented-coupling": {"family": "coupling", "padding_channels": 1},
}
GRID_GROUPS = ["C2", "C4", "D1", "D2", "D4"]
# escnn samples its kernel bases in float32, so a float64 model is equivariant only to about
# 1e-7 relative: invariance is asserted relative to the size of log p.
RELATIVE_TOLERANCE = 1e-6


def invariance_tolerance(flow, x: torch.Tensor) -> float:
    with torch.no_grad():
        return RELATIVE_TOLERANCE * max(1.0, float(flow.log_prob(x).abs().max()))


def image_flow(name: str, group: str, size: int = 5):
    channels = 1 if FAMILIES[name].get("padding_channels") else 3
    fields = {**SMALL, **FAMILIES[name]}
    return make_flow(group=group, data_shape=[channels, size, size], **fields)


def latent_batch(flow, n: int = 3, seed: int = 0) -> torch.Tensor:
    """Inputs of the bijection: data in [0, 1] and (augmented flows) normal padding."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *flow.latent_shape, generator=generator, dtype=torch.float64)
    channels = flow.data_shape[0]
    x[:, channels:] = torch.randn(x[:, channels:].shape, generator=generator, dtype=x.dtype)
    return x


@pytest.mark.parametrize("name", FAMILIES)
def test_inverse_recovers_input(name: str) -> None:
    flow = image_flow(name, "C4")
    x = latent_batch(flow)
    z, _ = flow.transform(x, method="exact")
    assert torch.allclose(flow.inverse(z), x, atol=1e-6)
    assert not torch.allclose(z, x, atol=1e-2)


@pytest.mark.parametrize("name", FAMILIES)
def test_logdet_matches_brute_force_jacobian(name: str) -> None:
    flow = image_flow(name, "D4", size=3)
    x = latent_batch(flow, n=2)
    _, logdet = flow.transform(x, method="exact")
    for item in range(2):

        def latent(v: torch.Tensor) -> torch.Tensor:
            return flow.transform(v.reshape(1, *flow.latent_shape), method="exact")[0].reshape(-1)

        jacobian = torch.autograd.functional.jacobian(latent, x[item].reshape(-1))
        brute_force = torch.linalg.slogdet(jacobian).logabsdet
        assert abs(float(brute_force - logdet[item].detach())) < 1e-6


@pytest.mark.parametrize("group", GRID_GROUPS)
@pytest.mark.parametrize("name", [n for n in FAMILIES if not n.startswith("augmented")])
def test_density_is_exactly_invariant_on_the_grid(name: str, group: str) -> None:
    flow = image_flow(name, group)
    x = image_batch(flow, n=4)
    assert len(grid_symmetries(group)) > 1
    assert equivariance_error(flow, x) <= invariance_tolerance(flow, x)


@pytest.mark.parametrize("group", GRID_GROUPS)
@pytest.mark.parametrize("name", [n for n in FAMILIES if n.startswith("augmented")])
def test_augmented_bound_is_exactly_invariant_with_the_noise_moved_along(
    name: str, group: str
) -> None:
    flow = image_flow(name, group)
    x = image_batch(flow, n=4)
    generator = torch.Generator().manual_seed(5)
    noise = torch.randn(3, 4, 1, 5, 5, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        reference = flow.log_prob(x, padding_noise=noise)
        tolerance = RELATIVE_TOLERANCE * max(1.0, float(reference.abs().max()))
        for element in grid_symmetries(group):
            moved = flow.log_prob(element(x), padding_noise=element(noise))
            assert float((moved - reference).abs().max()) <= tolerance
        # Without moving the noise along, the Monte-Carlo bound is invariant in expectation only.
        unmoved = flow.log_prob(grid_symmetries(group)[1](x), padding_noise=noise)
    assert float((unmoved - reference).abs().max()) > 1e3 * tolerance


@pytest.mark.parametrize("name", [n for n in FAMILIES if not n.startswith("augmented")])
def test_non_equivariant_counterpart_violates_invariance(name: str) -> None:
    flow = image_flow(name, "trivial")
    assert equivariance_error(flow, image_batch(flow), group="D4") > 1e-3


def test_soft_checkerboard_coupling_is_not_exactly_rotation_invariant() -> None:
    flow = make_flow(
        group="C4", data_shape=[1, 4, 4], family="coupling", coupling_split="checkerboard", **SMALL
    )
    x = image_batch(flow)
    # A 90-degree rotation of an even grid swaps the two checkerboard colours.
    assert equivariance_error(flow, x) > 1e-3


def test_soft_checkerboard_coupling_is_invariant_where_the_mask_is() -> None:
    # On an odd grid, a 180-degree rotation maps (i, j) to (4-i, 4-j): the parity is kept.
    flow = make_flow(
        group="C2", data_shape=[1, 5, 5], family="coupling", coupling_split="checkerboard", **SMALL
    )
    x = image_batch(flow)
    assert equivariance_error(flow, x) <= invariance_tolerance(flow, x)


POINT_FAMILIES = [
    ("coupling", "trivial", {}),
    ("iaf", "trivial", {}),
    ("iaf", "trivial", {"iaf_fast": "density"}),
    ("linear", "D4", {}),
    ("linear", "trivial", {}),
    ("mixed", "C4", {"blocks": ["linear", "residual"], "depth": 2}),
    ("polar", "D8", {}),
    ("polar", "trivial", {}),
]


@pytest.mark.parametrize(("family", "group", "extra"), POINT_FAMILIES)
def test_point_density_integrates_to_one(family: str, group: str, extra: dict) -> None:
    flow = make_flow(
        group=group, data_shape=[2], family=family, **{"depth": 3, "width": 3, **extra}
    )
    assert abs(density_integral(flow, 600) - 1.0) < 0.01


def _padded_point_flow():
    return make_flow(group="C4", data_shape=[2], padding_channels=1, depth=2, width=3)


def _marginal_by_quadrature(flow, x: torch.Tensor, half_width: float = 12.0) -> torch.Tensor:
    """log p(x) = log int p(x, e) de, with the joint density of the padded bijection."""
    pads = torch.linspace(-half_width, half_width, 2001, dtype=torch.float64)
    joint = torch.cat([x.repeat_interleave(len(pads), 0), pads.repeat(len(x)).unsqueeze(1)], dim=1)
    with torch.no_grad():
        z, logdet = flow.transform(joint, method="exact")
        log_joint = (flow.base_log_prob(z) + logdet).reshape(len(x), len(pads))
    return torch.logsumexp(log_joint, 1) + math.log(float(pads[1] - pads[0]))


def test_augmented_bounds_lie_below_the_marginal_and_tighten_with_samples() -> None:
    flow = _padded_point_flow()
    x = 1.5 * torch.randn(5, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    marginal = _marginal_by_quadrature(flow, x)
    generator = torch.Generator().manual_seed(0)

    def mean_and_stderr(samples: int, repeats: int) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            draws = torch.stack(
                [
                    flow.log_prob(
                        x,
                        padding_noise=torch.randn(
                            samples, 5, 1, generator=generator, dtype=torch.float64
                        ),
                    )
                    for _ in range(repeats)
                ]
            )
        return draws.mean(0), draws.std(0) / math.sqrt(repeats)

    elbo, elbo_error = mean_and_stderr(1, 400)
    iwae, iwae_error = mean_and_stderr(64, 40)
    assert (elbo + 4 * elbo_error < iwae).all(), (elbo, iwae)
    assert (iwae <= marginal + 4 * iwae_error).all(), (iwae, iwae_error, marginal)
    assert flow.is_lower_bound


def test_augmented_joint_density_integrates_to_one() -> None:
    flow = _padded_point_flow()
    axis = torch.linspace(-9.0, 9.0, 73, dtype=torch.float64)
    grid = torch.cartesian_prod(axis, axis, axis)
    with torch.no_grad():
        z, logdet = flow.transform(grid, method="exact")
        density = (flow.base_log_prob(z) + logdet).exp()
    assert abs(float(density.sum() * (axis[1] - axis[0]) ** 3) - 1.0) < 0.02


@pytest.mark.parametrize("name", FAMILIES)
def test_checkpoint_round_trip_and_export_keep_the_density(name: str) -> None:
    flow = image_flow(name, "C4")
    x = image_batch(flow)
    generator_seed = 11

    def log_prob(model) -> torch.Tensor:
        return model.log_prob(x, generator=torch.Generator().manual_seed(generator_seed))

    loaded = load_flow(save_checkpoint(flow)).double()
    assert torch.allclose(log_prob(loaded), log_prob(flow), atol=1e-9)
    exported = flow.export()
    assert not any(type(m).__module__.startswith("escnn") for m in exported.modules())
    assert torch.allclose(log_prob(exported), log_prob(flow), atol=1e-9)


def _count_network_calls(flow, run) -> int:
    calls = 0

    def hook(*_: object) -> None:
        nonlocal calls
        calls += 1

    handles = [
        layer.net.register_forward_hook(hook) for layer in flow.layers if hasattr(layer, "net")
    ]
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return calls


@pytest.mark.parametrize(
    ("fast", "density_calls", "sampling_calls"), [("sampling", 3, 1), ("density", 1, 3)]
)
def test_iaf_costs_one_pass_in_its_fast_direction_and_k_in_the_other(
    fast: str, density_calls: int, sampling_calls: int
) -> None:
    flow = make_flow(group="C4", data_shape=[3, 4, 4], family="iaf", iaf_fast=fast, depth=1)
    x = image_batch(flow)
    assert _count_network_calls(flow, lambda: flow.log_prob(x)) == density_calls
    assert _count_network_calls(flow, lambda: flow.sample(2, seed=0)) == sampling_calls


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"family": "coupling", "data_shape": [1, 8, 8]}, "needs at least 2"),
        ({"family": "iaf", "data_shape": [1, 8, 8]}, "set padding_channels >= 1"),
        ({"family": "coupling", "data_shape": [2], "group": "C4"}, "not one"),
        (
            {
                "family": "coupling",
                "data_shape": [2],
                "group": "trivial",
                "coupling_split": "checkerboard",
            },
            "needs images",
        ),
        ({"family": "iaf", "data_shape": [3, 8, 8], "iaf_blocks": 2}, "does not divide"),
        ({"family": "mixed", "data_shape": [3, 8, 8]}, "blocks"),
        ({"family": "nsf", "data_shape": [2], "group": "trivial"}, "transform pixels of images"),
        ({"family": "nsf", "data_shape": [1, 2, 2]}, "at least 3 pixels"),
        ({"family": "linear", "data_shape": [3, 8, 8], "blocks": ["linear"]}, "blocks"),
    ],
)
def test_invalid_family_configs_are_rejected_naming_the_problem(
    fields: dict, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        FlowConfig(**{"group": "C4", **fields})


def test_single_channel_coupling_works_with_padding_or_checkerboard() -> None:
    FlowConfig(family="coupling", group="C4", data_shape=[1, 8, 8], padding_channels=1)
    FlowConfig(family="coupling", group="C4", data_shape=[1, 8, 8], coupling_split="checkerboard")


def test_flows_without_residual_blocks_are_always_exact() -> None:
    flow = build_flow(FlowConfig(family="coupling", group="C4", data_shape=[3, 32, 32], depth=1))
    assert flow.resolve_method("auto") == "exact"
    assert flow.resolve_method("estimate") == "exact"


def test_convolution_exponential_that_cannot_converge_raises() -> None:
    from flows.errors import FlowError
    from flows.layers.linear import ConvExponential, FrozenLinearMap
    from flows.logdet import LogDetContext

    layer = ConvExponential(FrozenLinearMap(100.0 * torch.eye(2, dtype=torch.float64)))
    with pytest.raises(FlowError, match="did not converge"):
        layer(torch.ones(1, 2, dtype=torch.float64), LogDetContext())
    small = ConvExponential(FrozenLinearMap(0.5 * torch.eye(2, dtype=torch.float64)))
    y, logdet = small(torch.ones(1, 2, dtype=torch.float64), LogDetContext())
    assert torch.allclose(y, torch.full((1, 2), math.exp(0.5), dtype=torch.float64))
    assert float(logdet) == pytest.approx(1.0)
