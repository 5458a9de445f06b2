"""Benchmark of every flow family: invariance error, inverse error and throughput.

    python bench/families.py [--batch 64] [--repeats 3] [--groups C4 D4 trivial]

For each family on RGB 3x8x8 images (1x8x8 with one padding channel for the augmented flows),
depth 2, width 4, weights perturbed away from the initialisation, prints: parameters; the
invariance error max_g |log p(g.x) - log p(x)| over the group's exact grid maps (D4's for the
trivial baseline; in float64, and for augmented flows with the padding noise moved along by
g); the inverse error max |f^-1(f(x)) - x| on the bijection's input; and log_prob and
sampling throughput (items/s, float32, measured in one run so that the families compare
fairly). For 2-D point families it
prints the integral of the density over a 700x700 grid.
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable

import torch
from residual import density_integral, perturbed  # bench/residual.py, beside this file

from flows import Flow, FlowConfig
from flows.symmetry import grid_symmetries

IMAGE_FAMILIES: dict[str, dict] = {
    "residual": {"family": "residual"},
    "coupling": {"family": "coupling"},
    "coupling-soft": {"family": "coupling", "coupling_split": "checkerboard"},
    "iaf": {"family": "iaf"},
    "iaf-maf": {"family": "iaf", "iaf_fast": "density"},
    "linear": {"family": "linear"},
    "mixed": {"family": "mixed", "blocks": ["linear", "coupling"]},
    "aug-residual": {"family": "residual", "padding_channels": 1},
    "aug-coupling": {"family": "coupling", "padding_channels": 1},
}
POINT_FAMILIES: dict[str, dict] = {
    "coupling": {"family": "coupling", "group": "trivial"},
    "iaf": {"family": "iaf", "group": "trivial"},
    "linear": {"family": "linear", "group": "D4"},
    "mixed": {"family": "mixed", "blocks": ["linear", "residual"], "group": "C4"},
    "polar": {"family": "polar", "group": "D8"},
}


def rate(run: Callable[[], object], items: int, repeats: int) -> float:
    with torch.no_grad():
        run()
        start = time.perf_counter()
        for _ in range(repeats):
            run()
        return repeats * items / (time.perf_counter() - start)


def invariance_error(flow: Flow, x: torch.Tensor, group: str) -> tuple[float, float]:
    """max over ``group``'s grid maps and items of |log p(g.x) - log p(x)|, in float64, and
    max |log p(x)| (escnn's float32-sampled bases bound the error to ~1e-7 of it)."""
    flow = copy.deepcopy(flow).double()
    x = x.double()
    noise = None
    if flow.is_lower_bound:
        generator = torch.Generator().manual_seed(2)
        shape = (4, x.shape[0], flow.config.padding_channels, *x.shape[2:])
        noise = torch.randn(shape, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        reference = flow.log_prob(x, method="exact", padding_noise=noise)
        errors = [
            (
                flow.log_prob(
                    g(x), method="exact", padding_noise=None if noise is None else g(noise)
                )
                - reference
            )
            .abs()
            .max()
            for g in grid_symmetries(group)
        ]
    return float(torch.stack(errors).max()), float(reference.abs().max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--groups", nargs="+", default=["C4", "D4", "trivial"])
    args = parser.parse_args()
    print(
        "image families, depth 2, width 4, 8x8 (3 channels; augmented: 1 + 1 padding); "
        "inv.err over the group's exact grid maps in float64 (trivial: over D4's, and for "
        "trivial and soft coupling it is the violation); log_prob (residual blocks: the "
        "unbiased estimator, others: exact) and sampling in float32"
    )
    print(
        f"{'family':>13} {'group':>7} {'params':>7} {'inv.err':>9} {'max|logp|':>9} "
        f"{'inverse err':>11} {'log_prob/s':>11} {'samples/s':>10}"
    )
    for name, fields in IMAGE_FAMILIES.items():
        channels = 1 if fields.get("padding_channels") else 3
        for group in args.groups:
            config = FlowConfig(
                group=group, data_shape=[channels, 8, 8], depth=2, width=4, **fields
            )
            flow = perturbed(config)
            generator = torch.Generator().manual_seed(0)
            x = torch.rand(args.batch, channels, 8, 8, generator=generator)
            latent = torch.rand(args.batch, *flow.latent_shape, generator=generator)
            with torch.no_grad():
                z, _ = flow.transform(latent, method="exact")
                inverse_error = float((flow.inverse(z) - latent).abs().max())
            error, size = invariance_error(flow, x[:8], "D4" if group == "trivial" else group)
            density_rate = rate(
                lambda f=flow, x=x: f.log_prob(x, method="estimate"), len(x), args.repeats
            )
            sample_rate = rate(
                lambda f=flow: f.sample(args.batch, seed=0), args.batch, args.repeats
            )
            params = sum(p.numel() for p in flow.parameters())
            print(
                f"{name:>13} {group:>7} {params:>7} {error:>9.2e} {size:>9.2e} "
                f"{inverse_error:>11.2e} "
                f"{density_rate:>11.0f} {sample_rate:>10.0f}"
            )

    print("\n2-D point families, depth 3, width 4: integral of p over a 700x700 grid")
    for name, fields in POINT_FAMILIES.items():
        flow = perturbed(FlowConfig(data_shape=[2], depth=3, width=4, **fields)).double()
        print(f"{name:>13} {fields['group']:>7}  integral = {density_integral(flow):.5f}")


if __name__ == "__main__":
    main()
