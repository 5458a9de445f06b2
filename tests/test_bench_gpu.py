"""bench/gpu.py runs end to end: its CPU smoke test trains, scores and samples, and passes its
own invariance and normalisation checks (the GPU run itself is never a test dependency)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(300)
def test_gpu_check_smoke_runs_on_the_cpu() -> None:
    result = subprocess.run(
        [sys.executable, "bench/gpu.py", "--device", "cpu", "--quick"],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("device cpu")
    rows = [line for line in lines if "examples/s" in line]
    assert len(rows) == 2 and all(row.endswith("[ok]") for row in rows), result.stdout
    assert "integral 1.0" in rows[0] or "integral 0.99" in rows[0], rows[0]
