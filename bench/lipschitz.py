"""Benchmark of the invertibility certificate (issue 15): Lipschitz bounds and inverse errors.

    python bench/lipschitz.py [--steps 300] [--image-steps 100]

For residual point flows (depth 4, width 8; C4, D4, D8, SO2, O2, trivial) trained on 8 Gaussians
and residual digit models (1x8x8, depth 2, width 4; D4, C4) it prints max over layers of the dense
operator norm divided by c at build, after training and after ``load_flow``; the audit's
certified bound over c and |measured - dense|; and, per residual block (float64), the largest
true inverse error ||x - f^-1(y)||_2 against the largest reported error bound. Then, for
convolutions large enough to take the circulant bound, how much of c the certified layer uses.
"""

from __future__ import annotations

import argparse
import copy

import torch

from flows import Flow, FlowConfig, TrainConfig, build_flow
from flows.checkpoint import load_flow
from flows.data import digits, eight_gaussians
from flows.groups import build_field_types
from flows.layers import ResidualBlock
from flows.lipschitz import LipschitzConv2d, dense_operator_norm
from flows.logdet import LogDetContext
from flows.training import train


def dense_ratio(flow: Flow) -> float:
    norms = [dense_operator_norm(layer) for layer in flow.lipschitz_layers()]
    return max(norms) / flow.config.lipschitz_coeff


def inverse_errors(flow: Flow, x: torch.Tensor) -> tuple[float, float]:
    """(largest true error, largest reported bound) over residual blocks, in float64."""
    flow = copy.deepcopy(flow).double()
    h, errors, bounds = x.double(), [], []
    with torch.no_grad():
        for layer in flow.layers:
            out, _ = layer(h, LogDetContext())
            if isinstance(layer, ResidualBlock):
                back, info = layer.inverse_with_info(out)
                errors.append(float((back - h).reshape(len(h), -1).norm(dim=1).max()))
                bounds.append(info.error_bound)
            h = out
    return max(errors), max(bounds)


def row(kind: str, flow: Flow, data, x: torch.Tensor, config: TrainConfig) -> None:
    build = dense_ratio(flow)
    result = train(flow, data, config)
    trained = dense_ratio(flow)
    loaded = load_flow(result.checkpoint)
    audit = loaded.audit_lipschitz()
    dense = max(dense_operator_norm(layer) for layer in loaded.lipschitz_layers())
    error, bound = inverse_errors(loaded, x)
    print(
        f"{kind:>7} {flow.config.group:>7} {build:>11.8f} {trained:>11.8f} "
        f"{dense_ratio(loaded):>11.8f} {audit.certified / audit.coeff:>11.8f} "
        f"{abs(audit.measured - dense):>10.1e} {error:>10.2e} {bound:>10.2e}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--image-steps", type=int, default=100)
    args = parser.parse_args()
    print(
        f"{'data':>7} {'group':>7} {'build':>11} {'trained':>11} {'loaded':>11} "
        f"{'certified':>11} {'|aud-dns|':>10} {'inv err':>10} {'inv bound':>10}"
    )
    print("(build / trained / loaded / certified: max over layers of the norm divided by c)")
    points = eight_gaussians(5000, seed=0)
    x = torch.from_numpy(eight_gaussians(64, seed=7))
    point_train = TrainConfig(
        steps=args.steps, batch_size=256, learning_rate=3e-3, device="cpu", metric_interval=10**6
    )
    for group in ["C4", "D4", "D8", "SO2", "O2", "trivial"]:
        flow = build_flow(
            FlowConfig(group=group, family="residual", data_shape=[2], depth=4, width=8)
        )
        row("points", flow, points, x, point_train)
    images = digits(512)
    x = torch.from_numpy(digits(8)).float() / 255
    image_train = TrainConfig(
        steps=args.image_steps, batch_size=32, learning_rate=3e-3, device="cpu"
    )
    for group in ["D4", "C4"]:
        flow = build_flow(
            FlowConfig(family="residual", group=group, data_shape=[1, 8, 8], depth=2, width=4)
        )
        row("digits", flow, images, x, image_train)

    print("\ncirculant-bound convolutions (C4, 2 -> 2 regular fields, 3x3, weights x40, c=0.97)")
    for size in (12, 16, 28):
        types = build_field_types(FlowConfig(group="C4", data_shape=[2, size, size], width=2))
        layer = LipschitzConv2d(types.data, types.hidden, 3, (size, size), 0.97).eval()
        with torch.no_grad():
            layer.conv.weights.mul_(40.0)
        measured = layer.measured_norm()
        print(
            f"{size:>3}x{size:<3} exact={layer.bound_is_exact} certified="
            f"{layer.certified_norm():.6f} measured={measured:.6f} (uses {measured / 0.97:.4f} "
            "of c)"
        )


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
