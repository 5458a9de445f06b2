"""Trains the README's digits job with the library and draws the expected picture.

    python docs/walkthrough_digits.py     # writes docs/images/walkthrough_digits.png

The job's flow and training configs, verbatim, on the built-in data set it uses (``digits``, all
1,797, seed 0); prints the validation bpd by step, the scores of the first two digits (as the
README's ``log-prob`` call scores uploaded PNGs) and the wall time, and saves a grid of 64
training digits beside 64 samples (seed 0) at temperature 1 and at 0.75 (the README's call), as
the ``samples`` route draws them.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from flows import FlowConfig, TrainConfig, build_flow
from flows.data import grid_png, load_builtin
from flows.scoring import sample_array, score
from flows.training import TrainCallbacks, train

FLOW = {"group": "C4", "data_shape": [1, 8, 8], "width": 4, "depth": 4}
TRAINING = {
    "steps": 200,
    "batch_size": 64,
    "learning_rate": 0.003,
    "warmup_steps": 20,
    "metric_interval": 20,
    "checkpoint_interval": 100,
}
COLD = {"temperature": 0.75}
OUT = Path(__file__).resolve().parent / "images" / "walkthrough_digits.png"


class Printer(TrainCallbacks):
    def on_metrics(self, step: int, metrics: dict[str, float]) -> None:
        print(f"step {step}: val_bpd {metrics['val_bpd']:.3f}")


def main() -> int:
    torch.set_num_threads(1)
    data = load_builtin("digits", seed=0).array
    config = FlowConfig(**FLOW)
    flow = build_flow(config)
    start = time.perf_counter()
    train(flow, data, TrainConfig(**TRAINING), Printer())
    print(f"family {config.family}, trained in {time.perf_counter() - start:.1f} s")
    scored = score(flow, data[:2], method="exact")
    print(
        "log_prob", np.round(scored.log_prob, 3), "bits_per_dim", np.round(scored.bits_per_dim, 3)
    )
    # Data, then samples at temperature 1 and 0.75 (the README's call): 8 columns each.
    panels = [data[:64], sample_array(flow, 64, seed=0), sample_array(flow, 64, seed=0, **COLD)]
    gap = np.zeros((1, 1, 8, 8), dtype=np.uint8)
    rows = [
        np.concatenate([part for panel in panels for part in (panel[8 * r : 8 * r + 8], gap)][:-1])
        for r in range(8)
    ]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_bytes(grid_png(np.concatenate(rows), columns=26, scale=4))
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
