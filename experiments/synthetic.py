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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib import pyplot as plt

from experiments.budget import width_for_budget
from experiments.report import Section, save_figure
from experiments.runs import RunResult, run_training
from flows import FlowConfig, TrainConfig
from flows.data import eight_gaussians, eight_gaussians_log_prob, rings
from flows.metrics import equivariance_error

__all__ = ["SyntheticScale", "run_synthetic"]

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
class _Density:
    """A toy density: its sampler, the group it is invariant to, and the plotted half-width."""

    name: str
    sample: Callable[..., np.ndarray]
    symmetry: str
    extent: float


DENSITIES = (
    _Density("eight_gaussians", eight_gaussians, "D8", 6.5),
    _Density("rings", rings, "O2", 4.0),
)


def _grid(extent: float, size: int) -> tuple[np.ndarray, np.ndarray]:
    axis = np.linspace(-extent, extent, size)
    xx, yy = np.meshgrid(axis, axis)
    return axis, np.stack([xx.ravel(), yy.ravel()], axis=-1)


@torch.no_grad()
def _model_density(run: RunResult, points: np.ndarray, size: int) -> np.ndarray:
    x = torch.from_numpy(points.astype(np.float32))
    log_prob = torch.cat([run.flow.log_prob(chunk, method="exact") for chunk in x.split(4096)])
    return log_prob.exp().reshape(size, size).numpy()


def _target_density(density: _Density, points: np.ndarray, axis: np.ndarray) -> np.ndarray:
    size = len(axis)
    if density.name == "eight_gaussians":
        return np.exp(eight_gaussians_log_prob(points)).reshape(size, size)
    # The rings have no closed-form density: a normalised histogram of many samples stands in.
    samples = density.sample(TARGET_HISTOGRAM_SAMPLES, seed=TEST_SEED + 1)
    step = axis[1] - axis[0]
    edges = np.concatenate([axis - step / 2, [axis[-1] + step / 2]])
    histogram, _, _ = np.histogram2d(samples[:, 1], samples[:, 0], bins=[edges, edges])
    return histogram / (TARGET_HISTOGRAM_SAMPLES * step * step)


def run_synthetic(scale: SyntheticScale, out_dir: Path) -> tuple[Section, dict]:
    """Trains and evaluates every (density, group) pair; returns the section and its numbers."""
    section = Section("1. Synthetic densities: Resflow vs G-residual flows (paper §6.1)")
    started = time.perf_counter()
    widths = {}
    for group in GROUPS:
        template = FlowConfig(family="residual", group=group, data_shape=[2], depth=scale.depth)
        widths[group] = width_for_budget(template, scale.budget)
    train_config = TrainConfig(
        steps=scale.steps,
        batch_size=scale.batch_size,
        learning_rate=scale.learning_rate,
        seed=0,
        metric_interval=max(1, scale.steps // 10),
        checkpoint_interval=scale.steps,
        logdet="exact",
    )
    results: dict[str, dict] = {}
    figure, axes = plt.subplots(
        len(DENSITIES), len(GROUPS) + 1, figsize=(2.4 * (len(GROUPS) + 1), 2.5 * len(DENSITIES))
    )
    for row, density in enumerate(DENSITIES):
        train_data = density.sample(scale.train_items, seed=0)
        test = torch.from_numpy(density.sample(scale.test_items, seed=TEST_SEED))
        axis, points = _grid(density.extent, scale.grid)
        target = _target_density(density, points, axis)
        panels = [("target", target)]
        rows = {}
        for group in GROUPS:
            width, _ = widths[group]
            config = FlowConfig(
                family="residual", group=group, data_shape=[2], depth=scale.depth, width=width
            )
            run = run_training(
                f"{density.name}-{group}",
                config,
                train_config,
                train_data,
                out_dir / "checkpoints",
            )
            with torch.no_grad():
                test_ll = float(run.flow.log_prob(test, method="exact").mean())
            probe = test[:512]
            rows[group] = {
                "width": width,
                "parameters": run.parameters,
                "test_log_likelihood": test_ll,
                "invariance_error_data_group": equivariance_error(
                    run.flow, probe, density.symmetry
                ),
                "invariance_error_own_group": (
                    None if group == "trivial" else equivariance_error(run.flow, probe, group)
                ),
                "steps_per_second": run.steps_per_second,
            }
            panels.append(
                (f"{group} ({run.parameters} params)", _model_density(run, points, scale.grid))
            )
        if density.name == "eight_gaussians":
            rows["true density"] = {
                "test_log_likelihood": float(eight_gaussians_log_prob(test.numpy()).mean())
            }
        results[density.name] = rows
        for column, (title, values) in enumerate(panels):
            ax = axes[row, column]
            ax.imshow(
                values,
                origin="lower",
                extent=(-density.extent, density.extent, -density.extent, density.extent),
                cmap="magma",
                vmin=0.0,
                vmax=float(target.max()),
            )
            ax.set_title(f"{density.name}\n{title}" if column == 0 else title, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    path = save_figure(figure, out_dir / "figures" / "synthetic_densities.png")
    seconds = time.perf_counter() - started

    section.text(
        f"Budget {scale.budget} parameters per model (width chosen per group to match), depth "
        f"{scale.depth}, {scale.steps} steps of batch {scale.batch_size}, Adam lr "
        f"{scale.learning_rate}, exact log-det; {scale.train_items} training and "
        f"{scale.test_items} test samples (independent seeds). Invariance error: max over "
        "test points and group elements of |log p(g·x) − log p(x)| in nats (float32); the data "
        "group is D8 for the Gaussians and 24 elements of O(2) for the rings."
    )
    for density in DENSITIES:
        rows = results[density.name]
        table_rows = []
        for group in GROUPS:
            entry = rows[group]
            table_rows.append(
                [
                    group,
                    entry["width"],
                    entry["parameters"],
                    entry["test_log_likelihood"],
                    entry["invariance_error_data_group"],
                    entry["invariance_error_own_group"],
                    entry["steps_per_second"],
                ]
            )
        if "true density" in rows:
            table_rows.append(
                [
                    "true density",
                    None,
                    None,
                    rows["true density"]["test_log_likelihood"],
                    None,
                    None,
                    None,
                ]
            )
        section.text(f"**{density.name}** (data symmetry {density.symmetry})")
        section.table(
            [
                "model",
                "width",
                "params",
                "test log-lik (nats)",
                f"inv. err {density.symmetry}",
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
    section.text(f"Part 1 took {seconds:.0f} s.")
    return section, {"seconds": seconds, "results": results}
