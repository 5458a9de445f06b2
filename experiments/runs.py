"""One training run, as the service runs it: build, train, checkpoint, reload.

The worker builds ``build_flow(flow_config)`` and calls ``flows.train``; the API serves what
``flows.checkpoint.load_flow`` makes of the final checkpoint. A run here does the same, so every
number in the report is a number the service would give for the same configuration.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from experiments.budget import count_parameters
from flows import Flow, FlowConfig, TrainCallbacks, TrainConfig, build_flow, train
from flows.checkpoint import load_flow


class ImageRunScale(Protocol):
    """What :func:`image_train_config` reads of a part's scale."""

    steps: int
    batch_size: int
    learning_rate: float
    metric_interval: int


__all__ = ["CurvePoint", "RunResult", "run_training"]

logger = logging.getLogger(__name__)

# Called at every metric step with the flow in eval mode; returns extra metrics for the curve.
Probe = Callable[[Flow], dict[str, float]]


@dataclass(frozen=True)
class CurvePoint:
    step: int
    metrics: dict[str, float]


@dataclass
class RunResult:
    """A trained model reloaded from its final checkpoint, with its training history."""

    name: str
    flow: Flow
    parameters: int
    steps: int
    train_seconds: float
    curve: list[CurvePoint] = field(default_factory=list)

    @property
    def steps_per_second(self) -> float:
        """Training speed, without the time spent in the curve's evaluations."""
        return self.steps / max(self.train_seconds, 1e-9)

    def first_step_reaching(self, metric: str, target: float) -> int | None:
        """The first logged step at which ``metric`` is at most ``target`` (None: never)."""
        for point in self.curve:
            if point.metrics.get(metric, float("inf")) <= target:
                return point.step
        return None


class _Recorder(TrainCallbacks):
    def __init__(self, flow: Flow, probe: Probe | None) -> None:
        self.flow, self.probe = flow, probe
        self.curve: list[CurvePoint] = []
        self.probe_seconds = 0.0

    def on_metrics(self, step: int, metrics: dict[str, float]) -> None:
        values = dict(metrics)
        if self.probe is not None:
            start = time.perf_counter()
            # Eval mode caches the rescaled filters and leaves ActNorm alone; train() mode is
            # restored before the next step, which clears the cache again.
            self.flow.eval()
            values.update(self.probe(self.flow))
            self.flow.train()
            self.probe_seconds += time.perf_counter() - start
        self.curve.append(CurvePoint(step, values))


def run_training(
    name: str,
    flow_config: FlowConfig,
    train_config: TrainConfig,
    data: np.ndarray,
    checkpoint_dir: Path,
    probe: Probe | None = None,
) -> RunResult:
    """Trains ``flow_config`` on ``data``, saves the final checkpoint and reloads it.

    Arguments:
        name: the run's name; the checkpoint is ``checkpoint_dir / f"{name}.safetensors"``.
        flow_config: the model, built as the worker builds it (``build_flow``, seed 0).
        train_config: the run; its seed fixes batches, noise and augmentation.
        data: uint8 images (N, C, H, W) or float points (N, D).
        checkpoint_dir: where the final checkpoint goes.
        probe: extra evaluation at every metric step (e.g. a test-set curve).

    Returns:
        The model as ``load_flow`` returns it (eval mode), with parameters, time and curve.
    """
    flow = build_flow(flow_config)
    recorder = _Recorder(flow, probe)
    start = time.perf_counter()
    result = train(flow, data, train_config, callbacks=recorder)
    seconds = time.perf_counter() - start - recorder.probe_seconds
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    (checkpoint_dir / f"{name}.safetensors").write_bytes(result.checkpoint)
    served = load_flow(result.checkpoint)
    logger.info(
        "%s: %d steps in %.1f s (%.1f steps/s), final %s",
        name,
        result.step,
        seconds,
        result.step / max(seconds, 1e-9),
        result.metrics,
    )
    return RunResult(name, served, count_parameters(served), result.step, seconds, recorder.curve)


def image_train_config(scale: ImageRunScale, augment: bool, augment_group: str) -> TrainConfig:
    """The training run of an image experiment: seeded, one final checkpoint, optionally
    augmented by random elements of ``augment_group`` (the baselines)."""
    return TrainConfig(
        steps=scale.steps,
        batch_size=scale.batch_size,
        learning_rate=scale.learning_rate,
        seed=0,
        augment=augment,
        augment_group=augment_group if augment else None,
        metric_interval=scale.metric_interval,
        checkpoint_interval=scale.steps,
    )
