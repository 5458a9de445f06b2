"""``bench/serving.py --quick`` runs end to end: a real server, real requests, every figure."""

from __future__ import annotations

import pytest

from bench.serving import main

pytestmark = pytest.mark.timeout(300)


def test_quick_serving_bench_prints_every_figure() -> None:
    report = main(["--quick", "--seconds", "0.2"])
    lines = report.splitlines()
    rows = [line.split() for line in lines if line.startswith("points ")]
    # 2 endpoints x 2 sizes x 2 client counts, then log-prob at 16 items with .npy bodies
    assert len(rows) == 8 + 1
    for row in rows:
        requests, errors, ratio = int(row[4]), int(row[5]), float(row[8])
        assert requests >= 1 and errors == 0 and ratio > 0
        server_cpu_ms, client_cpu_ms = float(row[12]), float(row[13])
        assert server_cpu_ms > 0 and client_cpu_ms > 0
    assert any("x" in line and "p99/p50" in line for line in lines)
    cold = next(line for line in lines if line.strip().startswith("points  first request"))
    for step in ("imports", "fetch", "parse", "build", "load", "audit", "first call", "total"):
        assert step in cold
