"""Part 1 (paper §6.1): 8 Gaussians and concentric rings, Resflow vs G-residual flows.

Every model gets the same parameter budget: the trivial (non-equivariant) residual flow and the
C4, C8, D4, D8 residual flows each take the width whose parameter count is closest to it. Test
log-likelihood is exact (2-D Jacobians), on fresh samples from another seed; the invariance
error is max |log p(g.x) - log p(x)| over the data's symmetry (D8 for the Gaussians, a sample of
O(2) for the rings) and over the model's own group.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import pyplot as plt

from experiments.budget import width_for_budget
from experiments.report import Section, save_figure
from experiments.runs import RunResult, run_training
from flows import FlowConfig, TrainConfig
from flows.data import eight_gaussians, eight_gaussians_log_prob, rings
from flows.metrics import equivariance_error

__all__ = [
    "Density",
    "DensityResult",
    "DensityRuns",
    "ModelResult",
    "SyntheticResult",
    "SyntheticRuns",
    "SyntheticScale",
    "evaluate_synthetic",
    "render_synthetic",
    "run_synthetic",
]

GROUPS = ("trivial", "C4", "C8", "D4", "D8")
TEST_SEED = 1
TARGET_HISTOGRAM_SAMPLES = 400_000


@dataclass(frozen=True)
class SyntheticScale:
    """Sizes of part 1."""

    budget: int
    depth: int
    steps: int
    batch_size: int
    train_items: int
    test_items: int
    grid: int
    learning_rate: float = 3e-3


@dataclass(frozen=True)
class Density:
    """A toy density: its sampler, the group it is invariant to, and the plotted half-width."""

    name: str
    sample: Callable[..., np.ndarray]
    symmetry: str
    extent: float


DENSITIES = (
    Density("eight_gaussians", eight_gaussians, "D8", 6.5),
    Density("rings", rings, "O2", 4.0),
)


def _grid(extent: float, size: int) -> tuple[np.ndarray, np.ndarray]:
    axis = np.linspace(-extent, extent, size)
    xx, yy = np.meshgrid(axis, axis)
    return axis, np.stack([xx.ravel(), yy.ravel()], axis=-1)


@dataclass(frozen=True)
class DensityRuns:
    """The models trained on one density, by group, with their widths and the test samples."""

    density: Density
    test: torch.Tensor
    widths: dict[str, int]
    runs: dict[str, RunResult]


@dataclass(frozen=True)
class SyntheticRuns:
    """What :func:`run_synthetic` trained, and how long it took."""

    scale: SyntheticScale
    densities: list[DensityRuns]
    seconds: float


@dataclass(frozen=True)
class ModelResult:
    """One model's numbers on one density."""

    width: int
    parameters: int
    test_log_likelihood: float
    invariance_error_data_group: float
    invariance_error_own_group: float | None  # None: the trivial group has no own symmetry
    steps_per_second: float


@dataclass(frozen=True)
class DensityResult:
    """The models' numbers on one density, and the density grids the figure shows."""

    density: Density
    models: dict[str, ModelResult]
    true_test_log_likelihood: float | None  # None: the density has no closed form
    target: np.ndarray
    model_densities: dict[str, np.ndarray]


@dataclass(frozen=True)
class SyntheticResult:
    """Part 1's numbers and grids; :meth:`numbers` is its entry in ``results.json``."""

    scale: SyntheticScale
    densities: list[DensityResult]
    seconds: float

    def numbers(self) -> dict[str, Any]:
        results: dict[str, dict[str, Any]] = {}
        for entry in self.densities:
            rows: dict[str, Any] = {group: asdict(model) for group, model in entry.models.items()}
            if entry.true_test_log_likelihood is not None:
                rows["true density"] = {"test_log_likelihood": entry.true_test_log_likelihood}
            results[entry.density.name] = rows
        return {"seconds": self.seconds, "results": results}


def run_synthetic(scale: SyntheticScale, checkpoint_dir: Path) -> SyntheticRuns:
    """Trains every (density, group) pair at the width that meets the budget."""
    started = time.perf_counter()
    widths = {}
    for group in GROUPS:
        template = FlowConfig(family="residual", group=group, data_shape=[2], depth=scale.depth)
        widths[group], _ = width_for_budget(template, scale.budget)
    train_config = TrainConfig(
        steps=scale.steps,
        batch_size=scale.batch_size,
        learning_rate=scale.learning_rate,
        seed=0,
        metric_interval=max(1, scale.steps // 10),
        checkpoint_interval=scale.steps,
        logdet="exact",
    )
    densities = []
    for density in DENSITIES:
        train_data = density.sample(scale.train_items, seed=0)
        runs = {}
        for group in GROUPS:
            config = FlowConfig(
                family="residual",
                group=group,
                data_shape=[2],
                depth=scale.depth,
                width=widths[group],
            )
            runs[group] = run_training(
                f"{density.name}-{group}", config, train_config, train_data, checkpoint_dir
            )
        test = torch.from_numpy(density.sample(scale.test_items, seed=TEST_SEED))
        densities.append(DensityRuns(density, test, widths, runs))
    return SyntheticRuns(scale, densities, time.perf_counter() - started)


@torch.no_grad()
def _model_density(run: RunResult, points: np.ndarray, size: int) -> np.ndarray:
    x = torch.from_numpy(points.astype(np.float32))
    log_prob = torch.cat([run.flow.log_prob(chunk, method="exact") for chunk in x.split(4096)])
    return log_prob.exp().reshape(size, size).numpy()


def _target_density(density: Density, points: np.ndarray, axis: np.ndarray) -> np.ndarray:
    size = len(axis)
    if density.name == "eight_gaussians":
        return np.exp(eight_gaussians_log_prob(points)).reshape(size, size)
    # The rings have no closed-form density: a normalised histogram of many samples stands in.
    samples = density.sample(TARGET_HISTOGRAM_SAMPLES, seed=TEST_SEED + 1)
    step = axis[1] - axis[0]
    edges = np.concatenate([axis - step / 2, [axis[-1] + step / 2]])
    histogram, _, _ = np.histogram2d(samples[:, 1], samples[:, 0], bins=[edges, edges])
    return histogram / (TARGET_HISTOGRAM_SAMPLES * step * step)


def _evaluate_model(run: RunResult, width: int, test: torch.Tensor, symmetry: str) -> ModelResult:
    with torch.no_grad():
        test_ll = float(run.flow.log_prob(test, method="exact").mean())
    probe = test[:512]
    group = run.flow.config.group
    return ModelResult(
        width=width,
        parameters=run.parameters,
        test_log_likelihood=test_ll,
        invariance_error_data_group=equivariance_error(run.flow, probe, symmetry),
        invariance_error_own_group=(
            None if group == "trivial" else equivariance_error(run.flow, probe, group)
        ),
        steps_per_second=run.steps_per_second,
    )


def evaluate_synthetic(trained: SyntheticRuns) -> SyntheticResult:
    """Test log-likelihoods, invariance errors and the density grids of every model."""
    started = time.perf_counter()
    size = trained.scale.grid
    densities = []
    for entry in trained.densities:
        density = entry.density
        axis, points = _grid(density.extent, size)
        models = {
            group: _evaluate_model(run, entry.widths[group], entry.test, density.symmetry)
            for group, run in entry.runs.items()
        }
        true_ll = (
            float(eight_gaussians_log_prob(entry.test.numpy()).mean())
            if density.name == "eight_gaussians"
            else None
        )
        model_densities = {
            group: _model_density(run, points, size) for group, run in entry.runs.items()
        }
        target = _target_density(density, points, axis)
        densities.append(DensityResult(density, models, true_ll, target, model_densities))
    seconds = trained.seconds + time.perf_counter() - started
    return SyntheticResult(trained.scale, densities, seconds)


def _figure(result: SyntheticResult, path: Path) -> Path:
    """The learned densities on a grid beside the target, one row per density."""
    figure, axes = plt.subplots(
        len(result.densities),
        len(GROUPS) + 1,
        figsize=(2.4 * (len(GROUPS) + 1), 2.5 * len(result.densities)),
    )
    for row, entry in enumerate(result.densities):
        density = entry.density
        panels = [("target", entry.target)] + [
            (f"{group} ({entry.models[group].parameters} params)", values)
            for group, values in entry.model_densities.items()
        ]
        for column, (title, values) in enumerate(panels):
            ax = axes[row, column]
            ax.imshow(
                values,
                origin="lower",
                extent=(-density.extent, density.extent, -density.extent, density.extent),
                cmap="magma",
                vmin=0.0,
                vmax=float(entry.target.max()),
            )
            ax.set_title(f"{density.name}\n{title}" if column == 0 else title, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    return save_figure(figure, path)


def render_synthetic(result: SyntheticResult, out_dir: Path) -> Section:
    """Part 1's section of the report, and its figure under ``out_dir``."""
    scale = result.scale
    path = _figure(result, out_dir / "figures" / "synthetic_densities.png")
    section = Section("1. Synthetic densities: Resflow vs G-residual flows (paper §6.1)")
    section.text(
        f"Budget {scale.budget} parameters per model (width chosen per group to match), depth "
        f"{scale.depth}, {scale.steps} steps of batch {scale.batch_size}, Adam lr "
        f"{scale.learning_rate}, exact log-det; {scale.train_items} training and "
        f"{scale.test_items} test samples (independent seeds). Invariance error: max over "
        "test points and group elements of |log p(g·x) − log p(x)| in nats (float32); the data "
        "group is D8 for the Gaussians and 24 elements of O(2) for the rings."
    )
    for entry in result.densities:
        table_rows: list[list[object]] = [
            [
                group,
                model.width,
                model.parameters,
                model.test_log_likelihood,
                model.invariance_error_data_group,
                model.invariance_error_own_group,
                model.steps_per_second,
            ]
            for group, model in entry.models.items()
        ]
        if entry.true_test_log_likelihood is not None:
            table_rows.append(
                ["true density", None, None, entry.true_test_log_likelihood, None, None, None]
            )
        symmetry = entry.density.symmetry
        section.text(f"**{entry.density.name}** (data symmetry {symmetry})")
        section.table(
            [
                "model",
                "width",
                "params",
                "test log-lik (nats)",
                f"inv. err {symmetry}",
                "inv. err own group",
                "steps/s",
            ],
            table_rows,
        )
    section.figure(
        path,
        out_dir,
        "Learned densities on a grid beside the target (rings: histogram of 400k samples); "
        "one colour scale per row.",
    )
    section.text(f"Part 1 took {result.seconds:.0f} s.")
    return section
