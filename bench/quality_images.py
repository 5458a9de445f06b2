"""Image half of the quality benchmark: efnf's equivariant flows against zuko's generic flows.

Every model on a task sees the same training images, steps, batch size, learning-rate schedule,
uniform dequantization of each batch and the same logit transform (alpha ``LOGIT_ALPHA``, its
log-det counted in the likelihood); zuko's flows are trained with a uniformly random group element
applied to every training image (what a user of a generic library would do), efnf's equivariant
flows without. Test bpd is ``-(log p(x) - D log 256) / (D ln 2)`` on the held-out images, each
dequantized once with fixed noise shared by all models; the average group bpd is the same over
every exact grid symmetry g of the group applied to the test images (an invariant model scores
g.x like x).

Run alone: ``python bench/quality_images.py [--quick]`` prints the task table and the
data-efficiency table (digits with 10 %, 30 %, 100 % of the training images).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.quality_table import QualityRow, format_table
from flows import FlowConfig, build_flow
from flows.config import TrainConfig
from flows.data import dequantize, image_patches, rotated_digits
from flows.layers import LogitTransform
from flows.logdet import LogDetContext
from flows.metrics import bits_per_dim
from flows.symmetry import apply_random_symmetries, grid_symmetries
from flows.training import scheduled_learning_rate, train

__all__ = ["ImageTask", "data_efficiency_rows", "digits_task", "image_rows", "patches_task"]

GROUP = "D4"
LOGIT_ALPHA = 1e-6
TEST_FRACTION = 0.2
SPLIT_SEED = 1
EVAL_NOISE_SEED = 2
FRACTIONS = (0.1, 0.3, 1.0)


@dataclass(frozen=True)
class BenchScale:
    """Steps and batch shared by every model of a table, and the evaluation size."""

    steps: int
    batch_size: int
    eval_items: int
    patches: int
    learning_rate: float = 2e-3
    warmup_steps: int = 100

    @property
    def label(self) -> str:
        return f"{self.steps} steps x {self.batch_size}"


FULL = BenchScale(steps=2000, batch_size=64, eval_items=360, patches=4000)
QUICK = BenchScale(steps=15, batch_size=32, eval_items=32, patches=300, warmup_steps=5)


@dataclass(frozen=True)
class ImageTask:
    """Training images (uint8 levels), test images (dequantized once, float) and the group."""

    name: str
    train: np.ndarray
    test: Tensor
    group: str = GROUP


def _split(images: np.ndarray, eval_items: int) -> tuple[np.ndarray, Tensor]:
    order = np.random.default_rng(SPLIT_SEED).permutation(len(images))
    n_test = round(len(images) * TEST_FRACTION)
    test_levels = torch.from_numpy(images[order[:n_test]][:eval_items])
    test = dequantize(test_levels, torch.Generator().manual_seed(EVAL_NOISE_SEED))
    return images[order[n_test:]], test


def digits_task(scale: BenchScale, fraction: float = 1.0, seed: int = 0) -> ImageTask:
    """D4-rotated 8x8 digits; ``fraction`` of the training images (the test set is fixed)."""
    train_images, test = _split(rotated_digits(None, seed=seed, group=GROUP), scale.eval_items)
    kept = max(scale.batch_size, round(len(train_images) * fraction))
    label = "D4 digits" if fraction == 1.0 else f"D4 digits {fraction:.0%}"
    return ImageTask(f"{label} ({scale.label})", train_images[:kept], test)


def patches_task(scale: BenchScale, seed: int = 0) -> ImageTask:
    """8x8 RGB patches of the two sample photographs, each moved by a random D4 element."""
    images = image_patches(scale.patches, size=8, seed=seed, augment_group=GROUP)
    train_images, test = _split(images, scale.eval_items)
    return ImageTask(f"D4 RGB patches ({scale.label})", train_images, test)


# -- models --------------------------------------------------------------------------------------
def train_config(scale: BenchScale, seed: int) -> TrainConfig:
    """The optimisation every model of a table shares (efnf's trainer and the zuko loop)."""
    return TrainConfig(
        steps=scale.steps,
        batch_size=scale.batch_size,
        learning_rate=scale.learning_rate,
        warmup_steps=scale.warmup_steps,
        lr_schedule="cosine",
        seed=seed,
        validation_fraction=0.0,
        metric_interval=scale.steps,
        checkpoint_interval=scale.steps,
        device="cpu",
    )


LogDensity = Callable[[Tensor], Tensor]


def _efnf(config_fields: dict) -> Callable[[ImageTask, TrainConfig], tuple[LogDensity, int]]:
    def fit(task: ImageTask, config: TrainConfig) -> tuple[LogDensity, int]:
        flow_config = FlowConfig(
            data_shape=list(task.train.shape[1:]), logit_alpha=LOGIT_ALPHA, **config_fields
        )
        flow = build_flow(flow_config, seed=config.seed)
        train(flow, task.train, config)
        return (lambda x: flow.log_prob(x, method="exact")), _count(flow)

    return fit


def _zuko(kind: str, transforms: int, hidden: tuple[int, ...]):
    def fit(task: ImageTask, config: TrainConfig) -> tuple[LogDensity, int]:
        import zuko

        features = math.prod(task.train.shape[1:])
        make = zuko.flows.NSF if kind == "NSF" else zuko.flows.MAF
        torch.manual_seed(config.seed)
        model = make(features, transforms=transforms, hidden_features=hidden)
        logit = LogitTransform(LOGIT_ALPHA)
        with torch.no_grad():
            # A fixed standardisation (one scalar shift and scale: invariant under the group),
            # so the logit values meet zuko's splines inside their bound [-5, 5].
            levels = torch.from_numpy(task.train)
            sample, _ = logit(
                dequantize(levels, torch.Generator().manual_seed(0)), LogDetContext()
            )
            shift, scale = float(sample.mean()), float(sample.std())

        def log_density(x: Tensor) -> Tensor:
            y, logdet = logit(x, LogDetContext())
            z = ((y - shift) / scale).reshape(len(y), -1)
            return model().log_prob(z) + logdet - features * math.log(scale)

        _fit_generic(model, log_density, task, config)
        return log_density, _count(model)

    return fit


def _fit_generic(
    model: torch.nn.Module, log_density: LogDensity, task: ImageTask, config: TrainConfig
) -> None:
    """efnf's training step for a generic model: same batches, noise, augmentation, schedule."""
    data = torch.from_numpy(task.train)
    generator = torch.Generator().manual_seed(config.seed)
    elements = grid_symmetries(task.group)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.0)
    dim = math.prod(task.train.shape[1:])
    for step in range(config.steps):
        index = torch.randint(len(data), (config.batch_size,), generator=generator)
        x = apply_random_symmetries(dequantize(data[index], generator), elements, generator)
        loss = -log_density(x).mean() / dim
        for group in optimizer.param_groups:
            group["lr"] = scheduled_learning_rate(config, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# The fast G-NSF (1x1 read-out; within 2x zuko NSF's time) and the best one (3x3 read-out).
G_NSF = {"family": "nsf", "group": GROUP, "depth": 4, "width": 2, "hidden_layers": 1}
G_NSF_WIDE_HEAD = {**G_NSF, "width": 4, "spline_head_kernel": 3}
E_RESFLOW = {"family": "residual", "group": GROUP, "depth": 4, "width": 3}
MODELS: dict[str, Callable] = {
    "zuko NSF + D4 aug (2x[24,24])": _zuko("NSF", 2, (24, 24)),
    "zuko MAF + D4 aug (3x[64,64])": _zuko("MAF", 3, (64, 64)),
    "efnf G-NSF D4 w2": _efnf(G_NSF),
    "efnf G-NSF D4 w4, 3x3 head": _efnf(G_NSF_WIDE_HEAD),
    "efnf E-Resflow D4 width 3": _efnf(E_RESFLOW),
}
# The models of the data-efficiency table: zuko's best augmented flow and efnf's best model.
EFFICIENCY_MODELS = ("zuko NSF + D4 aug (2x[24,24])", "efnf G-NSF D4 w4, 3x3 head")


@torch.no_grad()
def _evaluate(log_density: LogDensity, task: ImageTask) -> tuple[float, float]:
    dim = math.prod(task.test.shape[1:])

    def bpd(x: Tensor) -> float:
        return float(bits_per_dim(log_density(x), dim).mean())

    elements = grid_symmetries(task.group)
    return bpd(task.test), float(np.mean([bpd(element(task.test)) for element in elements]))


def _row(task: ImageTask, name: str, scale: BenchScale, seed: int) -> QualityRow:
    torch.set_num_threads(1)
    started = time.perf_counter()
    log_density, params = MODELS[name](task, train_config(scale, seed))
    wall = time.perf_counter() - started
    test_bpd, group_bpd = _evaluate(log_density, task)
    return QualityRow(
        task=task.name,
        model=name,
        params=params,
        metric_name="test bpd",
        metric=test_bpd,
        wall_s=wall,
        extra=(("group bpd", group_bpd),),
    )


def image_rows(quick: bool, seed: int) -> list[QualityRow]:
    """Every model on D4-rotated digits and on D4 RGB patches (the E-Resflow on digits only:
    at 2000 steps it takes ten times the others' time)."""
    scale = QUICK if quick else FULL
    rows = []
    digits = digits_task(scale, seed=seed)
    for name in MODELS:
        rows.append(_row(digits, name, scale, seed))
    patches = patches_task(scale, seed=seed)
    for name in MODELS:
        if "Resflow" not in name:
            rows.append(_row(patches, name, scale, seed))
    return rows


def data_efficiency_rows(quick: bool, seed: int) -> list[QualityRow]:
    """zuko's best augmented flow and efnf's best equivariant flow on 10 %, 30 % and 100 % of
    the training digits (same test digits)."""
    scale = QUICK if quick else FULL
    rows = []
    for fraction in FRACTIONS:
        task = digits_task(scale, fraction, seed=seed)
        for name in EFFICIENCY_MODELS:
            rows.append(_row(task, name, scale, seed))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI size (about 20 s)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(format_table(image_rows(args.quick, args.seed)))
    print()
    print(format_table(data_efficiency_rows(args.quick, args.seed)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
