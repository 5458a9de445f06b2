"""Benchmark of G-residual flows: exactness figures and escnn-vs-exported throughput.

    python bench/residual.py [--batch 64] [--repeats 5]

For a small C4 and D4 image model and the trivial baseline (1x8x8, the digits' shape), prints:
the invariance error max_g |log p(g.x) - log p(x)| over the exact D4 grid symmetries, the inverse
error max |f^-1(f(x)) - x| with the fixed-point iterations it took, and log_prob throughput of
the escnn model against the same model exported to plain torch (one run, so the ratio is fair).
For 2-D point models it prints the integral of the density over a fine grid.
Weights are randomly perturbed away from the initialisation so that nothing is near-identity.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from flows import Flow, FlowConfig, build_flow
from flows.layers import EquivariantActNorm
from flows.metrics import equivariance_error


def perturbed(config: FlowConfig, scale: float = 0.3) -> Flow:
    flow = build_flow(config, seed=0)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in flow.parameters():
            parameter.add_(scale * torch.randn(parameter.shape, generator=generator))
        for layer in flow.layers:
            if isinstance(layer, EquivariantActNorm):
                layer.initialized.fill_(True)
    return flow.eval()


def throughput(flow: Flow, x: torch.Tensor, method: str, repeats: int) -> float:
    with torch.no_grad():
        flow.log_prob(x, method=method)
        start = time.perf_counter()
        for _ in range(repeats):
            flow.log_prob(x, method=method)
        return repeats * len(x) / (time.perf_counter() - start)


def density_integral(flow: Flow, n: int = 700) -> float:
    half_width = max(8.0, 1.5 * float(flow.sample(4000, seed=0).abs().max()))
    axis = torch.linspace(-half_width, half_width, n, dtype=torch.float64)
    grid = torch.cartesian_prod(axis, axis)
    with torch.no_grad():
        density = torch.cat([flow.log_prob(c).exp() for c in grid.split(50_000)])
    return float(density.sum() * (axis[1] - axis[0]) ** 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    x = torch.rand(args.batch, 1, 8, 8, generator=torch.Generator().manual_seed(0))

    print(
        "image models, 1x8x8, depth 2, width 4; invariance error max_g |log p(g.x) - log p(x)| "
        "over the model's own exact grid maps (the trivial baseline: over D4's 8)"
    )
    header = (
        f"{'group':>8} {'params':>7} {'inv.err f64':>12} {'inv.err f32':>12} {'inverse err':>12} "
        f"{'iters':>6} "
        f"{'escnn ex/s':>11} {'export ex/s':>12} {'export/escnn':>13} {'method':>8}"
    )
    print(header)
    for group in ["C4", "D4", "trivial"]:
        config = FlowConfig(family="residual", group=group, data_shape=[1, 8, 8], depth=2, width=4)
        flow = perturbed(config)
        own_group = "D4" if group == "trivial" else group
        error32 = equivariance_error(flow, x[:16], group=own_group)
        error = equivariance_error(copy.deepcopy(flow).double(), x[:16].double(), own_group)
        z, _ = flow.transform(x, method="estimate")
        x_back, report = flow.inverse_with_info(z.detach())
        inverse_error = float((x_back - x).abs().max())
        exported = flow.export()
        for method in ("exact", "estimate"):
            escnn_rate = throughput(flow, x, method, args.repeats)
            export_rate = throughput(exported, x, method, args.repeats)
            params = sum(p.numel() for p in flow.parameters())
            print(
                f"{group:>8} {params:>7} {error:>12.2e} {error32:>12.2e} {inverse_error:>12.2e} "
                f"{report.max_iterations:>6} {escnn_rate:>11.0f} {export_rate:>12.0f} "
                f"{export_rate / escnn_rate:>13.2f} {method:>8}"
            )

    print("\n2-D point models, depth 3, width 4: integral of p over a 700x700 grid")
    for group in ["C4", "D4", "trivial"]:
        flow = perturbed(
            FlowConfig(family="residual", group=group, data_shape=[2], depth=3, width=4)
        ).double()
        print(f"{group:>8}  integral = {density_integral(flow):.5f}")


if __name__ == "__main__":
    main()
