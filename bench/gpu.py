"""The GPU check: train, score and sample on a device, with the service tests' configs.

    python bench/gpu.py                      # on CUDA (fails if there is none)
    python bench/gpu.py --device cpu --quick # the same script as a smoke test (first two models)

For the 2-D point model and the 8x8 image model of ``tests/service/payloads.py`` (C4, width 2,
depth 1) and a wider residual image model, it trains on the built-in data (eight Gaussians,
digits) on ``--device``, then scores and samples there, and checks on that device:

- invariance: max_g |log p(g.x) - log p(x)| over the exact grid symmetries of the model's group
  (rot90 for C4), below 1e-3 nats in float32;
- normalisation of the point model: the integral of p over a grid is 1 within 2%;
- finite scores, and samples of the data's shape.

It prints examples/s for training, scoring and sampling per model, and exits with status 1 if a
check fails. Record the figures in the README whenever a GPU machine is lent; never a test
dependency (tests/test_bench_gpu.py runs only the CPU smoke test).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from flows import Flow, FlowConfig, TrainConfig, build_flow
from flows.data import digits, eight_gaussians
from flows.metrics import equivariance_error
from flows.scoring import sample_array, score
from flows.training import train

INVARIANCE_TOLERANCE = 1e-3
NORMALISATION_TOLERANCE = 0.02


@dataclass(frozen=True)
class Case:
    name: str
    flow: FlowConfig
    data: Callable[[int], np.ndarray]
    batch_size: int


CASES = [
    Case(
        "points C4 (service tests)",
        FlowConfig(family="residual", group="C4", data_shape=[2], width=2, depth=1),
        lambda n: eight_gaussians(n, seed=0),
        256,
    ),
    Case(
        "images C4 (service tests)",
        FlowConfig(family="residual", group="C4", data_shape=[1, 8, 8], width=2, depth=1),
        digits,
        64,
    ),
    Case(
        "images C4 residual, width 16, depth 4",
        FlowConfig(family="residual", group="C4", data_shape=[1, 8, 8], width=16, depth=4),
        digits,
        64,
    ),
]


def density_integral(flow: Flow, device: torch.device, n: int) -> float:
    """The integral of p over an n x n grid covering the samples, on ``device``."""
    half_width = max(8.0, 1.5 * float(flow.sample(2000, seed=0).abs().max()))
    axis = torch.linspace(-half_width, half_width, n, device=device)
    grid = torch.cartesian_prod(axis, axis)
    with torch.no_grad():
        density = torch.cat(
            [flow.log_prob(chunk, method="exact").double().exp() for chunk in grid.split(50_000)]
        )
    return float(density.sum() * float(axis[1] - axis[0]) ** 2)


def _per_second(count: int, started: float) -> float:
    return count / (time.perf_counter() - started)


def run_case(case: Case, device: torch.device, quick: bool) -> tuple[list[str], list[str]]:
    """(figures, failed checks) of one case."""
    steps, items = (3, 32) if quick else (200, 1024)
    data = case.data(items)
    training = TrainConfig(
        steps=steps,
        batch_size=min(case.batch_size, items),
        metric_interval=steps,
        validation_fraction=0.0,
        device=device.type,
    )
    flow = build_flow(case.flow, seed=0)
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    result = train(flow, data, training)
    train_rate = _per_second(steps * training.batch_size, started)
    assert result.step == steps
    trained = flow.eval()

    started = time.perf_counter()
    scores = score(trained, data, method="auto")
    score_rate = _per_second(len(data), started)
    started = time.perf_counter()
    samples = sample_array(trained, len(data), seed=0)
    sample_rate = _per_second(len(data), started)

    failed = []
    if not np.isfinite(scores.log_prob).all():
        failed.append("non-finite scores")
    if list(samples.shape[1:]) != list(case.flow.data_shape):
        failed.append(f"samples shaped {list(samples.shape)}")
    x = torch.as_tensor(data[:32], dtype=torch.float32, device=device)
    if not case.flow.is_points:
        x = (x + 0.5) / 256.0
    with torch.no_grad():
        invariance = equivariance_error(trained, x, method="exact")
    if not invariance < INVARIANCE_TOLERANCE:
        failed.append(f"invariance error {invariance:.2e}")
    figures = [
        f"train {train_rate:,.0f} examples/s",
        f"score {score_rate:,.0f} examples/s",
        f"sample {sample_rate:,.0f} examples/s",
        f"invariance {invariance:.1e}",
    ]
    if case.flow.is_points:
        integral = density_integral(trained, device, 200 if quick else 700)
        figures.append(f"integral {integral:.4f}")
        if abs(integral - 1.0) > NORMALISATION_TOLERANCE:
            failed.append(f"integral {integral:.4f}")
    return figures, failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--quick", action="store_true", help="a few steps and items (smoke test)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run on a GPU machine, or pass --device cpu", file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {name}, torch {torch.__version__}{' (quick)' if args.quick else ''}")
    all_failed = []
    # The smoke test skips the wide model: exact scoring of it takes a minute on a CPU.
    for case in CASES[:2] if args.quick else CASES:
        figures, failed = run_case(case, device, args.quick)
        status = "ok" if not failed else "FAILED: " + "; ".join(failed)
        print(f"{case.name:<40} {', '.join(figures)}  [{status}]")
        all_failed += failed
    return 1 if all_failed else 0


if __name__ == "__main__":
    sys.exit(main())
