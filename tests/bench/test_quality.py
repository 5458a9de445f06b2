"""``bench/quality.py --quick`` runs end to end and prints every point model's row."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_quality_benchmark_prints_every_point_row() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "quality.py"), "--quick", "--tasks", "points"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    lines = result.stdout.splitlines()
    for task, group in (("8 gaussians", "D8"), ("rings", "O2")):
        models = [
            f"efnf polar {group} (default)",
            f"efnf residual {group} (w8 d4)",
            f"zuko NSF + {group} augmentation",
            f"zuko MAF + {group} augmentation",
            f"zuko NSF + {group} aug, efnf default's wall time",
        ]
        for model in models:
            row = [line for line in lines if line.startswith(task) and model in line]
            assert len(row) == 1, (task, model, result.stdout)
            kl = float(row[0].split("KL nats")[1].split()[0])
            assert 0.0 < kl < 10.0, row


def test_unknown_task_is_named() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "quality.py"), "--tasks", "pointz"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "pointz" in result.stderr
