"""The invertibility certificate (issue 15).

Every Lipschitz layer's operator norm, measured on its dense matrix, is at most c at build, after
training and after load; audits agree with the dense norms; the inverse's reported error bound
holds, and its tolerance is relative where float32 needs it. Also the smaller honesty fixes:
checkpoints keep densities and dtype, ActNorm never initialises inside a forward pass, unknown
standard errors are not reported as 0, metrics refuse groups they cannot apply, image samples
lie in [0, 1].
"""

from __future__ import annotations

import functools
import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from flows import FlowConfig, TrainConfig, build_flow
from flows.checkpoint import load_flow, save_checkpoint
from flows.data import digits, eight_gaussians, quantize
from flows.flow import DATA_INITIALIZED_LAYERS
from flows.groups import build_field_types
from flows.layers import EquivariantNet, ResidualBlock
from flows.lipschitz import (
    LipschitzConv2d,
    LipschitzLinear,
    circulant_norm_bound,
    dense_operator_norm,
)
from flows.metrics import equivariance_error
from flows.scoring import sample_array, score
from flows.training import TrainCallbacks, train

from .conftest import make_flow, perturb

WITHIN = 1.0 + 1e-6
POINT_GROUPS = ["C4", "D4", "D8", "SO2", "O2"]
# The trained checks of C4 run by default; the other groups are slow.
TRAINED_GROUPS = [
    "C4",
    *(pytest.param(g, marks=pytest.mark.slow) for g in ["D4", "D8", "SO2", "O2"]),
]


def dense_ratio(flow) -> float:
    """max over layers of the dense operator norm, divided by c."""
    norms = [dense_operator_norm(layer) for layer in flow.lipschitz_layers()]
    return max(norms) / flow.config.lipschitz_coeff


def assert_certified(flow) -> None:
    assert dense_ratio(flow) <= WITHIN
    audit = flow.audit_lipschitz()
    assert audit.holds and audit.layers == len(flow.lipschitz_layers())
    dense = max(dense_operator_norm(layer) for layer in flow.lipschitz_layers())
    assert abs(audit.measured - dense) <= 1e-3


@pytest.mark.parametrize("group", POINT_GROUPS)
def test_a_fresh_point_flow_is_within_the_bound(group: str) -> None:
    assert_certified(
        build_flow(FlowConfig(group=group, family="residual", data_shape=[2], depth=2, width=4))
    )


@pytest.mark.parametrize("group", ["trivial", "C4", "D4", "SO2"])
def test_a_fresh_image_flow_is_within_the_bound(group: str) -> None:
    assert_certified(
        build_flow(
            FlowConfig(family="residual", group=group, data_shape=[1, 6, 6], depth=1, width=2)
        )
    )


def test_huge_weights_are_rescaled_to_the_bound() -> None:
    flow = build_flow(FlowConfig(group="D8", family="residual", data_shape=[2], depth=1, width=2))
    with torch.no_grad():
        for layer in flow.lipschitz_layers():
            layer.linear.weights.mul_(1e3)
    assert_certified(flow)
    assert dense_ratio(flow) >= 1.0 - 1e-6  # rescaled to c, not below


@functools.cache
def _trained_points(group: str) -> tuple[torch.nn.Module, bytes]:
    flow = build_flow(FlowConfig(group=group, family="residual", data_shape=[2], depth=2, width=4))
    config = TrainConfig(steps=150, batch_size=128, learning_rate=5e-3, metric_interval=150)
    result = train(flow, eight_gaussians(2000, seed=0), config)
    return flow, result.checkpoint


@pytest.mark.parametrize("group", TRAINED_GROUPS)
def test_trained_point_flow_stays_within_the_bound_and_after_load(group: str) -> None:
    flow, checkpoint = _trained_points(group)
    assert_certified(flow)
    loaded = load_flow(checkpoint)
    assert_certified(loaded)
    x = torch.from_numpy(eight_gaussians(64, seed=5))
    with torch.no_grad():
        assert torch.equal(loaded.log_prob(x), flow.log_prob(x))


def test_trained_image_flow_stays_within_the_bound_and_after_load() -> None:
    config = FlowConfig(
        family="residual", group="D4", data_shape=[1, 8, 8], depth=1, width=2, exact_max_dim=64
    )
    flow = build_flow(config)
    result = train(flow, digits(128), TrainConfig(steps=20, batch_size=16, learning_rate=1e-2))
    assert_certified(flow)
    assert_certified(load_flow(result.checkpoint))


@pytest.mark.parametrize(
    ("out_channels", "in_channels", "kernel", "grid", "slack"),
    [
        (3, 2, 3, (5, 5), 1.3),
        (2, 4, 3, (4, 6), 1.3),
        (4, 1, 3, (8, 8), 1.3),
        (1, 3, 5, (7, 7), 1.3),
        # A grid smaller than the kernel is still bounded, loosely (the exact path serves it).
        (2, 2, 5, (3, 3), 2.5),
    ],
)
def test_circulant_bound_is_an_upper_bound_of_the_zero_padded_norm(
    out_channels: int, in_channels: int, kernel: int, grid: tuple[int, int], slack: float
) -> None:
    generator = torch.Generator().manual_seed(out_channels * 7 + kernel)
    for _ in range(5):
        weight = torch.randn(
            out_channels, in_channels, kernel, kernel, generator=generator, dtype=torch.float64
        )
        n = in_channels * math.prod(grid)
        basis = torch.eye(n, dtype=torch.float64).reshape(n, in_channels, *grid)
        columns = torch.nn.functional.conv2d(basis, weight, padding=kernel // 2).reshape(n, -1)
        dense = float(torch.linalg.matrix_norm(columns, ord=2))
        bound = float(circulant_norm_bound(weight, grid))
        assert dense <= bound * (1 + 1e-12)
        assert bound <= slack * dense


def test_large_convolutions_are_certified_by_the_circulant_bound() -> None:
    types = build_field_types(FlowConfig(group="C4", data_shape=[2, 12, 12], width=2))
    layer = LipschitzConv2d(types.data, types.hidden, 3, (12, 12), 0.97).double().eval()
    with torch.no_grad():
        layer.conv.weights.mul_(40.0)
    assert not layer.bound_is_exact  # 2 x 144 inputs: above EXACT_NORM_MAX_DIM
    dense = dense_operator_norm(layer)
    assert dense <= layer.certified_norm() <= 0.97 * WITHIN
    assert abs(layer.measured_norm() - dense) <= 1e-3 * dense


def _negative_identity_block(coeff: float) -> ResidualBlock:
    """A point residual block whose branch is exactly -coeff * I (Lip(g) = coeff)."""
    data = build_field_types(FlowConfig(group="trivial", data_shape=[2])).data
    layer = LipschitzLinear(data, data, coeff, bias=False).double()
    weights = layer.linear.weights
    basis = []
    with torch.no_grad():
        for index in range(weights.numel()):
            weights.zero_()
            weights[index] = 1.0
            basis.append(layer.raw_parameters()[0].reshape(-1))
        target = -50.0 * torch.eye(2, dtype=torch.float64).reshape(-1)
        solution = torch.linalg.lstsq(torch.stack(basis, 1), target).solution
        weights.copy_(solution.to(weights.dtype))
    block = ResidualBlock(EquivariantNet(layer), atol=1e-6, max_iter=50_000)
    return block.eval()


def test_inverse_error_bound_holds_near_lipschitz_one() -> None:
    block = _negative_identity_block(0.998)
    weight, _ = block.lipschitz_layers()[0].effective_parameters()
    assert torch.allclose(weight, -0.998 * torch.eye(2, dtype=torch.float64), atol=1e-12)
    assert block.lipschitz_bound() == pytest.approx(0.998, abs=1e-12)
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = x + block.g(x)
    x_back, info = block.inverse_with_info(y)
    error = float((x_back - x).norm(dim=1).max())
    assert error <= info.error_bound * (1 + 1e-9) + 1e-13
    assert info.error_bound <= 1e-6 and error >= 0.5 * info.error_bound  # tight, not vacuous
    # The last step alone would understate the error by 1 / (1 - L) = 500.
    assert info.step < error / 100


def test_trained_flow_inverse_reports_bound_its_errors() -> None:
    flow, _ = _trained_points("C4")
    x = torch.from_numpy(eight_gaussians(32, seed=3)).double()
    flow = flow.double()
    try:
        z, _ = flow.transform(x, method="exact")
        x_back, report = flow.inverse_with_info(z.detach())
        tolerance = flow.config.inverse_atol + 1e-6 * float(z.detach().norm(dim=1).max())
        assert report.max_error_bound <= tolerance
        # Errors compound through the (well-conditioned) stack; the total stays at that scale.
        assert float((x_back - x).norm(dim=1).max()) <= 10 * len(report.layers) * (
            report.max_error_bound + 1e-12
        )
    finally:
        flow.float()


@pytest.mark.parametrize("data_shape", [[2], [1, 5, 5]])
def test_float32_inverse_of_large_latents_uses_a_relative_tolerance(data_shape: list[int]) -> None:
    # No logit transform: its sigmoid saturates at |z| ~ 1e3, the residual blocks do not.
    config = FlowConfig(
        family="residual", group="C4", data_shape=data_shape, depth=2, width=2, logit_alpha=None
    )
    flow = build_flow(config)
    flow = perturb(flow, 0.3, seed=3).eval()
    z = 1e3 * torch.randn(4, *flow.latent_shape, generator=torch.Generator().manual_seed(1))
    x, report = flow.inverse_with_info(z)
    assert report.max_iterations < flow.config.inverse_max_iter
    with torch.no_grad():
        z_back, _ = flow.transform(x, method="exact")
    relative = (z_back - z).reshape(4, -1).norm(dim=1) / z.reshape(4, -1).norm(dim=1)
    assert float(relative.max()) < 1e-4


class _DensityRecorder(TrainCallbacks):
    """Records the densities the run's own flow gives at every checkpoint."""

    def __init__(self, flow, x: torch.Tensor) -> None:
        self.flow, self.x = flow, x
        self.seen: dict[int, tuple[torch.Tensor, bytes]] = {}

    def on_checkpoint(self, step: int, checkpoint: bytes) -> None:
        with torch.no_grad():
            self.seen[step] = (self.flow.log_prob(self.x, method="exact"), checkpoint)


def test_mid_training_checkpoint_has_the_densities_the_run_saw() -> None:
    flow = build_flow(FlowConfig(group="D8", family="residual", data_shape=[2], depth=2, width=2))
    x = torch.from_numpy(eight_gaussians(16, seed=4))
    recorder = _DensityRecorder(flow, x)
    config = TrainConfig(steps=10, batch_size=64, learning_rate=2e-2, checkpoint_interval=5)
    train(flow, eight_gaussians(500, seed=0), config, recorder)
    during, checkpoint = recorder.seen[5]
    with torch.no_grad():
        loaded = load_flow(checkpoint).log_prob(x, method="exact")
    assert torch.allclose(loaded, during, rtol=0.0, atol=1e-5)


@pytest.mark.parametrize("family", ["residual", "polar"])
def test_a_train_mode_log_prob_does_not_initialise_actnorm(family: str) -> None:
    flow = build_flow(
        FlowConfig(group="C4", family=family, data_shape=[2], depth=2, width=2)
    ).train()
    x = torch.from_numpy(eight_gaussians(32, seed=0))
    with torch.no_grad():
        first = flow.log_prob(x)
        assert torch.equal(flow.log_prob(x), first)
    actnorms = [layer for layer in flow.layers if isinstance(layer, DATA_INITIALIZED_LAYERS)]
    assert actnorms and not any(bool(layer.initialized) for layer in actnorms)
    assert flow.initialize_actnorm(x)
    assert all(bool(layer.initialized) for layer in actnorms)
    assert not flow.initialize_actnorm(x)  # once only
    with torch.no_grad():
        assert not torch.allclose(flow.log_prob(x), first)


def test_load_flow_keeps_the_checkpoint_dtype() -> None:
    flow = make_flow(group="D4", family="residual", data_shape=[2], depth=2, width=2)
    loaded = load_flow(save_checkpoint(flow))
    assert next(loaded.parameters()).dtype == torch.float64
    x = 2.0 * torch.randn(4, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.equal(loaded.log_prob(x), flow.log_prob(x))
    single = load_flow(save_checkpoint(flow), dtype=torch.float32)
    assert next(single.parameters()).dtype == torch.float32


def test_legacy_checkpoints_and_train_configs_load() -> None:
    flow = build_flow(FlowConfig(group="C4", family="residual", data_shape=[2], depth=1, width=2))
    blob = save_checkpoint(flow, train_config=TrainConfig(steps=3))
    tensors = load_tensors(blob)
    for name, _ in flow.named_modules():
        if name.endswith("net.0"):
            tensors[f"model.{name}.u"] = torch.randn(2)
    size = int.from_bytes(blob[:8], "little")
    metadata = json.loads(blob[8 : 8 + size])["__metadata__"]
    train_json = json.loads(metadata["train_config"])
    metadata["train_config"] = json.dumps({**train_json, "lipschitz_refresh_iters": 4})
    legacy = save_tensors(tensors, metadata=metadata)
    assert len(load_tensors(legacy)) > len(load_tensors(blob))
    loaded = load_flow(legacy)
    x = torch.from_numpy(eight_gaussians(8, seed=0))
    with torch.no_grad():
        assert torch.equal(loaded.log_prob(x), flow.eval().log_prob(x))
    assert "lipschitz_refresh_iters" not in TrainConfig(lipschitz_refresh_iters=2).model_dump()


def test_one_padding_draw_reports_an_unknown_standard_error() -> None:
    x = np.random.default_rng(0).normal(size=(4, 2)).astype(np.float64)
    one = make_flow(
        group="C4", data_shape=[2], depth=1, width=2, padding_channels=1, padding_eval_samples=1
    )
    _, stderr = one.log_prob_with_stderr(torch.from_numpy(x))
    assert torch.isnan(stderr).all()
    assert score(one, x).stderr is None
    two = make_flow(
        group="C4", data_shape=[2], depth=1, width=2, padding_channels=1, padding_eval_samples=2
    )
    _, stderr = two.log_prob_with_stderr(torch.from_numpy(x))
    assert (stderr > 0).all() and torch.isfinite(stderr).all()


@pytest.mark.parametrize(("group", "data_shape"), [("trivial", [2]), ("C3", [1, 5, 5])])
def test_equivariance_error_refuses_groups_without_exact_elements(
    group: str, data_shape: list[int]
) -> None:
    flow = make_flow(group=group, data_shape=data_shape, depth=1, width=2)
    x = torch.rand(2, *data_shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with pytest.raises(ValueError, match="no element besides the identity"):
        equivariance_error(flow, x)
    other = "D8" if data_shape == [2] else "D4"
    assert equivariance_error(flow, x, group=other) > 1e-6  # a real measurement


def test_image_samples_lie_in_the_unit_interval_like_the_service_samples() -> None:
    flow = make_flow(
        family="residual", group="C4", data_shape=[1, 5, 5], depth=1, width=2, scale=1.0
    )
    samples = flow.sample(32, seed=0, temperature=2.0)
    generator = torch.Generator().manual_seed(0)
    z = 2.0 * torch.randn(32, *flow.latent_shape, generator=generator, dtype=torch.float64)
    raw = flow.inverse(z)
    assert bool(((raw < 0) | (raw > 1)).any())  # the logit's alpha puts mass outside [0, 1]
    assert torch.equal(samples, raw.clamp(0.0, 1.0))
    assert np.array_equal(sample_array(flow, 32, seed=0, temperature=2.0), quantize(samples))


def test_a_blocks_bound_is_recomputed_whenever_a_weight_changes() -> None:
    flow = build_flow(FlowConfig(family="residual", group="C8", data_shape=[2], depth=1))
    block = next(layer for layer in flow.layers if isinstance(layer, ResidualBlock))

    def fresh() -> float:
        return math.prod(layer.certified_norm() for layer in block.lipschitz_layers())

    first = block.lipschitz_bound()
    assert first == fresh() and block.lipschitz_bound() == first
    # An in-place edit (what an optimiser step does): the cached bound must not survive it.
    weights = block.lipschitz_layers()[0].escnn_layer().weights
    with torch.no_grad():
        weights.mul_(0.25)
    assert block.lipschitz_bound() == fresh() < first
    # A state loaded by replacing the parameter objects.
    state = {
        name: value * 0.5 if name.endswith("weights") else value
        for name, value in block.state_dict().items()
    }
    before = block.lipschitz_bound()
    block.load_state_dict(state, assign=True)
    assert block.lipschitz_bound() == fresh() < before
