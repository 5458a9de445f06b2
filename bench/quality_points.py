"""The 2-D point tasks of the quality benchmark: efnf flows against zuko's, side by side.

Every model trains on the same data, with the same steps, batch size and learning rate (Adam
family, 1e-3), single-threaded, and is scored by KL(p || q) = E_p[log p - log q] in nats, a
Monte-Carlo average over fresh samples of the true density p (known in closed form for both
tasks), with its standard error. zuko's generic flows see every batch moved by a random element
of the task's symmetry group (what a user of a generic library would do); efnf's equivariant
flows build the symmetry in.

Tasks: ``eight_gaussians`` (D8) and ``rings`` (O2). The equal-wall-time rows train zuko's NSF for
as long as efnf's default model took, and report how many steps that bought.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import zuko
from torch import Tensor

from bench.quality_table import QualityRow
from flows import FlowConfig, TrainConfig, build_flow
from flows.data.toy2d import eight_gaussians, eight_gaussians_log_prob, rings, rings_log_prob
from flows.symmetry import point_symmetries
from flows.training import train

__all__ = ["PointScale", "point_rows"]

LEARNING_RATE = 1e-3


@dataclass(frozen=True)
class PointScale:
    """Steps and batch of every model, training set size and Monte-Carlo evaluation size."""

    steps: int
    batch: int
    train_items: int
    eval_items: int

    @classmethod
    def of(cls, quick: bool) -> PointScale:
        if quick:
            return cls(steps=20, batch=64, train_items=2000, eval_items=2000)
        return cls(steps=600, batch=256, train_items=10_000, eval_items=20_000)


@dataclass(frozen=True)
class PointTask:
    name: str
    group: str
    sample: Callable[..., np.ndarray]
    log_prob: Callable[[np.ndarray], np.ndarray]


TASKS = [
    PointTask("8 gaussians", "D8", eight_gaussians, eight_gaussians_log_prob),
    PointTask("rings", "O2", rings, rings_log_prob),
]


def _kl(task: PointTask, log_q: Callable[[Tensor], Tensor], scale: PointScale, seed: int):
    """(KL(p || q), its standard error) from eval_items fresh samples of p."""
    sample = task.sample(scale.eval_items, seed=10_000 + seed)
    with torch.no_grad():
        model = log_q(torch.from_numpy(sample)).double().numpy()
    gap = task.log_prob(sample.astype(np.float64)) - model
    return float(gap.mean()), float(gap.std() / math.sqrt(len(gap)))


def _row(task: PointTask, model: str, params: int, kl: tuple[float, float], wall: float, **extra):
    print(f"{task.name}: {model}: KL {kl[0]:.4f} in {wall:.1f} s", file=sys.stderr, flush=True)
    figures = (("kl_stderr", kl[1]), *((name, float(value)) for name, value in extra.items()))
    return QualityRow(task.name, model, params, "KL nats", kl[0], wall, figures)


# -- efnf ---------------------------------------------------------------------------------------
def _efnf_models(task: PointTask) -> dict[str, FlowConfig]:
    group = task.group
    return {
        f"efnf polar {group} (default)": FlowConfig(group=group, data_shape=[2]),
        "efnf polar trivial": FlowConfig(group="trivial", data_shape=[2]),
        f"efnf residual {group} (w8 d4)": FlowConfig(
            family="residual", group=group, data_shape=[2], width=8, depth=4
        ),
        "efnf residual trivial (w8 d4)": FlowConfig(
            family="residual", group="trivial", data_shape=[2], width=8, depth=4
        ),
    }


def _train_efnf(config: FlowConfig, data: np.ndarray, scale: PointScale, seed: int):
    flow = build_flow(config, seed=seed)
    training = TrainConfig(
        steps=scale.steps,
        batch_size=scale.batch,
        learning_rate=LEARNING_RATE,
        seed=seed,
        validation_fraction=0.0,
        metric_interval=scale.steps,
        checkpoint_interval=scale.steps,
    )
    start = time.perf_counter()
    train(flow, data, training)
    return flow, time.perf_counter() - start


# -- zuko ---------------------------------------------------------------------------------------
def _random_elements(group: str, n: int, generator: torch.Generator) -> Tensor:
    """n random 2x2 matrices of ``group``: uniform over a finite group, Haar for O2/SO2."""
    if group in ("SO2", "O2"):
        angle = 2 * math.pi * torch.rand(n, generator=generator)
        cos, sin = torch.cos(angle), torch.sin(angle)
        rotations = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
        if group == "SO2":
            return rotations
        flips = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
        return rotations * torch.stack([torch.ones(n), flips], -1)[:, None, :]
    elements = torch.stack([m.float() for m in point_symmetries(group)])
    return elements[torch.randint(len(elements), (n,), generator=generator)]


def _zuko_flow(kind: str, seed: int) -> zuko.flows.Flow:
    torch.manual_seed(seed)
    if kind == "NSF":
        return zuko.flows.NSF(2, transforms=3, hidden_features=(64, 64))
    return zuko.flows.MAF(2, transforms=3, hidden_features=(64, 64))


def _train_zuko(
    kind: str, task: PointTask, data: np.ndarray, scale: PointScale, seed: int,
    seconds: float | None = None,
) -> tuple[zuko.flows.Flow, float, int]:  # fmt: skip
    """Trains for scale.steps steps, or for ``seconds`` of wall time if given."""
    flow = _zuko_flow(kind, seed)
    optimizer = torch.optim.Adam(flow.parameters(), lr=LEARNING_RATE)
    tensor = torch.from_numpy(data)
    generator = torch.Generator().manual_seed(seed)
    start, steps = time.perf_counter(), 0
    while (steps < scale.steps) if seconds is None else (time.perf_counter() - start < seconds):
        batch = tensor[torch.randint(len(tensor), (scale.batch,), generator=generator)]
        moved = torch.einsum(
            "bij,bj->bi", _random_elements(task.group, scale.batch, generator), batch
        )
        loss = -flow().log_prob(moved).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        steps += 1
    return flow, time.perf_counter() - start, steps


def _parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _warm_up(scale: PointScale, seed: int) -> None:
    """A few untimed steps of each kind of model, so that no timed run pays first-call costs
    (escnn's basis construction, allocator growth)."""
    tiny = PointScale(steps=3, batch=scale.batch, train_items=100, eval_items=10)
    task = TASKS[0]
    data = task.sample(tiny.train_items, seed=seed)
    for config in _efnf_models(task).values():
        _train_efnf(config, data, tiny, seed)
    _train_zuko("NSF", task, data, tiny, seed)


def point_rows(quick: bool, seed: int) -> list[QualityRow]:
    """Every model on every point task, then zuko NSF at efnf's default model's wall time."""
    torch.set_num_threads(1)
    scale = PointScale.of(quick)
    _warm_up(scale, seed)
    rows, equal_time = [], []
    for task in TASKS:
        data = task.sample(scale.train_items, seed=seed)
        default_wall = 0.0
        for model, config in _efnf_models(task).items():
            flow, wall = _train_efnf(config, data, scale, seed)
            default_wall = default_wall or wall
            kl = _kl(task, flow.log_prob, scale, seed)
            rows.append(_row(task, model, _parameters(flow), kl, wall, steps=scale.steps))
        for kind in ("NSF", "MAF"):
            flow, wall, steps = _train_zuko(kind, task, data, scale, seed)
            kl = _kl(task, lambda x, f=flow: f().log_prob(x), scale, seed)
            name = f"zuko {kind} + {task.group} augmentation"
            rows.append(_row(task, name, _parameters(flow), kl, wall, steps=steps))
        flow, wall, steps = _train_zuko("NSF", task, data, scale, seed, seconds=default_wall)
        kl = _kl(task, lambda x, f=flow: f().log_prob(x), scale, seed)
        name = f"zuko NSF + {task.group} aug, efnf default's wall time"
        equal_time.append(_row(task, name, _parameters(flow), kl, wall, steps=steps))
    return rows + equal_time
