"""Training, exact resumption, divergence detection, checkpoints and config validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from flows import FlowConfig, TrainConfig, TrainingDiverged, build_flow
from flows.checkpoint import (
    CheckpointError,
    load_flow,
    load_flow_with_info,
    read_checkpoint_info,
    save_checkpoint,
)
from flows.config import check_data_compatible
from flows.data import digits, eight_gaussians
from flows.data.toy2d import eight_gaussians_log_prob
from flows.scoring import sample_array, score
from flows.training import TrainCallbacks, train

POINTS = FlowConfig(family="residual", group="D8", data_shape=[2], depth=3, width=4)
POLAR_POINTS = FlowConfig(group="D8", data_shape=[2], depth=2, width=8)
DIGITS = FlowConfig(
    family="residual", group="D4", data_shape=[1, 8, 8], depth=1, width=1, exact_max_dim=64
)


class Recorder(TrainCallbacks):
    def __init__(self) -> None:
        self.metrics: dict[int, dict[str, float]] = {}
        self.checkpoints: dict[int, bytes] = {}
        self.steps: list[int] = []

    def on_step(self, step: int, loss: float) -> None:
        assert math.isfinite(loss)
        self.steps.append(step)

    def on_metrics(self, step: int, metrics: dict[str, float]) -> None:
        self.metrics[step] = metrics

    def on_checkpoint(self, step: int, checkpoint: bytes) -> None:
        self.checkpoints[step] = checkpoint


# The two longest unmarked tests of tests/flows (--durations: 11.5 s and 6.3 s on 1 thread).
@pytest.mark.slow
def test_training_on_eight_gaussians_lowers_the_loss_clearly() -> None:
    recorder = Recorder()
    config = TrainConfig(steps=250, batch_size=256, learning_rate=5e-3, metric_interval=25)
    result = train(build_flow(POINTS), eight_gaussians(3000, seed=0), config, recorder)
    first, last = recorder.metrics[25]["val_nll"], result.metrics["val_nll"]
    assert last < first - 0.5, (first, last)
    assert result.step == 250 and not result.stopped


@pytest.mark.slow
def test_polar_flow_fits_eight_gaussians_within_a_tenth_of_a_nat() -> None:
    """KL(p || q) = E_p[log p - log q], by Monte Carlo over fresh samples of p."""
    flow = build_flow(POLAR_POINTS)
    train(flow, eight_gaussians(3000, seed=0), TrainConfig(steps=300, batch_size=256))
    sample = eight_gaussians(20_000, seed=7)
    with torch.no_grad():
        log_q = flow.log_prob(torch.from_numpy(sample)).double().numpy()
    kl = float(np.mean(eight_gaussians_log_prob(sample.astype(np.float64)) - log_q))
    assert 0.0 < kl < 0.1, kl


@pytest.mark.parametrize("flow_config", [POINTS, POLAR_POINTS], ids=["residual", "polar"])
def test_resume_from_a_checkpoint_is_exact(flow_config: FlowConfig) -> None:
    data = eight_gaussians(500, seed=1)
    config = TrainConfig(steps=12, batch_size=32, checkpoint_interval=5, metric_interval=4)
    straight = Recorder()
    full = train(build_flow(flow_config), data, config, straight)
    after = Recorder()
    resumed = train(build_flow(flow_config, seed=9), data, config, after, straight.checkpoints[5])
    assert straight.steps == list(range(1, 13)) and after.steps == list(range(6, 13))
    assert resumed.metrics["loss"] == full.metrics["loss"]
    full_state = load_flow(full.checkpoint).state_dict()
    resumed_state = load_flow(resumed.checkpoint).state_dict()
    for key, value in full_state.items():
        assert torch.equal(value, resumed_state[key]), key


def test_images_train_with_the_estimator_and_report_bpd() -> None:
    recorder = Recorder()
    config = TrainConfig(steps=4, batch_size=8, metric_interval=2, augment=True)
    result = train(build_flow(DIGITS), digits(64), config, recorder)
    assert set(recorder.metrics) == {2, 4}
    assert 0.0 < result.metrics["bpd"] < 16.0 and "val_bpd" in result.metrics
    # The loss is nats per dimension: bpd = loss / ln 2 + log2(256).
    assert result.metrics["bpd"] == pytest.approx(result.metrics["loss"] / math.log(2.0) + 8.0)


def test_validation_bpd_is_the_exact_bpd_where_the_config_allows_it() -> None:
    from flows.data import dequantize
    from flows.metrics import bits_per_dim
    from flows.training import VALIDATION_ITEMS, validation_noise_seed, validation_split

    flow, data = build_flow(DIGITS), digits(64)
    config = TrainConfig(steps=4, batch_size=8, metric_interval=2, logdet="estimate")

    class ExactValidation(Recorder):
        def __init__(self) -> None:
            super().__init__()
            self.exact: dict[int, float] = {}

        def on_metrics(self, step: int, metrics: dict[str, float]) -> None:
            super().on_metrics(step, metrics)
            _, validation = validation_split(len(data), config.validation_fraction, config.seed)
            items = torch.from_numpy(data)[torch.from_numpy(validation)][:VALIDATION_ITEMS]
            generator = torch.Generator().manual_seed(validation_noise_seed(config.seed, step))
            with torch.no_grad():
                log_prob = flow.log_prob(dequantize(items, generator), method="exact")
            self.exact[step] = float(bits_per_dim(log_prob, flow.dim).mean())

    recorder = ExactValidation()
    train(flow, data, config, recorder)
    for step, exact in recorder.exact.items():
        assert recorder.metrics[step]["val_bpd"] == pytest.approx(exact, abs=1e-5)


def test_divergence_stops_with_a_clear_error() -> None:
    data = eight_gaussians(100, seed=0)
    data[7] = np.nan
    config = TrainConfig(steps=50, batch_size=100, validation_fraction=0.0)
    with pytest.raises(TrainingDiverged, match="diverged at step 1"):
        train(build_flow(POINTS), data, config)


def test_should_stop_ends_the_run_with_a_checkpoint() -> None:
    class StopAfterThree(Recorder):
        def should_stop(self) -> bool:
            return len(self.metrics) >= 3

    recorder = StopAfterThree()
    config = TrainConfig(steps=100, batch_size=16, metric_interval=1)
    result = train(build_flow(POINTS), eight_gaussians(200), config, recorder)
    assert result.stopped and result.step == 3
    assert read_checkpoint_info(result.checkpoint).step == 3


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_checkpoint_round_trip_reproduces_log_prob_exactly(mode: str) -> None:
    flow = build_flow(DIGITS, seed=4)
    train(flow, digits(64), TrainConfig(steps=2, batch_size=8))
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = flow.log_prob(x, method="exact")
    loaded = load_flow(save_checkpoint(flow, step=2))
    loaded.train(mode == "train")
    with torch.no_grad():
        assert torch.equal(loaded.log_prob(x, method="exact"), expected)


def test_checkpoints_are_safetensors_and_reject_garbage() -> None:
    blob = save_checkpoint(build_flow(POINTS), step=7, metrics={"nll": 1.5})
    info = read_checkpoint_info(blob)
    assert info.step == 7 and info.metrics == {"nll": 1.5} and info.flow_config == POINTS
    with pytest.raises(CheckpointError):
        read_checkpoint_info(b"\x80\x04pickle")
    with pytest.raises(CheckpointError):
        load_flow(blob[: len(blob) // 2])


def test_load_flow_with_info_gives_the_flow_and_the_info_of_one_read() -> None:
    flow = build_flow(POINTS, seed=2).eval()
    blob = save_checkpoint(flow, step=5, metrics={"nll": 2.5})
    loaded, info = load_flow_with_info(blob)
    assert info == read_checkpoint_info(blob) and info.step == 5
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(loaded.log_prob(x), load_flow(blob).log_prob(x))
        assert torch.equal(loaded.log_prob(x), flow.log_prob(x))


def test_scoring_and_sampling_in_the_data_convention() -> None:
    flow = build_flow(DIGITS).eval()
    images = digits(5)
    exact = score(flow, images, method="exact")
    estimate = score(flow, images, method="estimate")
    assert exact.method == "exact" and exact.stderr is None
    assert estimate.stderr is not None and (estimate.stderr > 0).all()
    assert np.all(np.abs(estimate.log_prob - exact.log_prob) < 6 * estimate.stderr + 1e-3)
    assert exact.bits_per_dim is not None and exact.bits_per_dim.shape == (5,)
    samples = sample_array(flow, 3, seed=1)
    assert samples.dtype == np.uint8 and samples.shape == (3, 1, 8, 8)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"group": "C5x", "data_shape": [2]}, "group 'C5x' is not supported"),
        ({"group": "C4", "data_shape": [3]}, "acts on 2-D points only"),
        ({"group": "C4", "data_shape": [1, 4, 6]}, "need square images"),
        ({"group": "D4", "data_shape": [8, 8]}, "rank 2"),
        ({"group": "C4", "data_shape": [2], "lipschitz_coeff": 1.0}, "lipschitz_coeff"),
    ],
)
def test_invalid_configs_are_rejected_naming_the_problem(config: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        FlowConfig(**config)


def test_data_compatibility_names_the_field() -> None:
    with pytest.raises(ValueError, match=r"flow.data_shape \[1, 8, 8\] does not match"):
        check_data_compatible(DIGITS, "points", (2,))
    check_data_compatible(DIGITS, "images", (1, 8, 8))


@pytest.mark.parametrize(
    ("model", "values", "field"),
    [
        (TrainConfig, {"grad_clip": float("inf")}, "grad_clip"),
        (TrainConfig, {"learning_rate": float("nan")}, "learning_rate"),
        (FlowConfig, {"data_shape": [2], "scale_bound": float("inf")}, "scale_bound"),
        (
            FlowConfig,
            {"data_shape": [2], "estimator": {"geometric_p": float("nan")}},
            "geometric_p",
        ),
    ],
)
def test_non_finite_numbers_are_refused(model: type, values: dict, field: str) -> None:
    """An infinite grad_clip was once stored, then neither its JSON nor its checkpoint loaded."""
    with pytest.raises(ValidationError, match=rf"{field}\n  Input should be a finite number"):
        model(**values)


def test_the_largest_seed_trains_and_validates() -> None:
    """Seeds derived per validation pass wrap below 2^64 instead of overflowing torch's."""
    config = TrainConfig(steps=2, batch_size=16, metric_interval=1, seed=2**63 - 1)
    result = train(build_flow(POINTS), eight_gaussians(64, seed=0), config)
    assert result.step == 2 and "val_nll" in result.metrics
