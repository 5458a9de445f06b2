"""The two sizes of the experiments: ``full`` (about an hour on 2 idle CPU cores) and ``quick``.

``full`` is sized from short runs (2 torch threads) on this project's 2-core machine while
it was nearly idle (load ~1), validation included. 2-D points, depth 4, ~4,500 parameters,
batch 256: 24 (trivial) to 50 (C4) steps/s. 8x8 digits, depth 4, batch 64, estimated log-det:
trivial width 32 11.6, C4 width 8 9.0, D4 width 4 8.1, D4 width 8 4.6 steps/s. That
extrapolates to ~12 min for part 1 (10 runs of 2,000 steps), ~25 min for part 2 (5 runs of
2,000 steps plus the exact evaluation) and a few minutes for the coupling flows of part 3,
whose log-dets need no estimator. ``quick`` is the CI smoke test: the same code paths in a
few minutes. The report prints the measured steps/s of every run and the time of every part.
"""

from __future__ import annotations

from dataclasses import dataclass

from experiments.coupling import CouplingScale
from experiments.digits import DigitsScale
from experiments.synthetic import SyntheticScale

__all__ = ["FULL", "QUICK", "Scale"]


@dataclass(frozen=True)
class Scale:
    name: str
    synthetic: SyntheticScale
    digits: DigitsScale
    coupling: CouplingScale


FULL = Scale(
    name="full",
    synthetic=SyntheticScale(
        budget=4500,
        depth=4,
        steps=2000,
        batch_size=256,
        train_items=20_000,
        test_items=5000,
        grid=160,
    ),
    digits=DigitsScale(
        baseline_width=32,
        depth=4,
        steps=2000,
        batch_size=64,
        metric_interval=100,
        eval_items=128,
    ),
    coupling=CouplingScale(
        budget=6000,
        depth=4,
        steps=1500,
        batch_size=64,
        train_items=6000,
        test_items=512,
        metric_interval=100,
        curve_items=128,
    ),
)

QUICK = Scale(
    name="quick",
    synthetic=SyntheticScale(
        budget=500,
        depth=2,
        steps=30,
        batch_size=128,
        train_items=2000,
        test_items=500,
        grid=48,
    ),
    digits=DigitsScale(
        baseline_width=8,
        depth=2,
        steps=12,
        fractions=(1 / 2,),
        batch_size=32,
        metric_interval=4,
        eval_items=16,
    ),
    coupling=CouplingScale(
        budget=800,
        depth=2,
        steps=12,
        batch_size=32,
        train_items=400,
        test_items=64,
        metric_interval=4,
        curve_items=16,
    ),
)
