"""Helpers shared by the fault tests: data sets, the metric-history check, worker log reads."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np

from tests.service.stack import Stack

# pytest's ``record_property`` fixture: measured figures go to the JUnit XML report.
RecordProperty = Callable[[str, object], None]


def builtin_points(stack: Stack, n: int = 512, seed: int = 1) -> str:
    """Creates the built-in eight Gaussians; returns the data set id."""
    response = stack.client.post(
        "/v1/datasets/builtin", json={"name": "eight_gaussians", "n": n, "seed": seed}
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def upload_points(stack: Stack, points: np.ndarray, name: str) -> str:
    buffer = io.BytesIO()
    np.save(buffer, points)
    response = stack.client.post("/v1/datasets", files={"file": (name, buffer.getvalue())})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def metric_steps(stack: Stack, job_id: str) -> list[int]:
    response = stack.client.get(f"/v1/jobs/{job_id}/metrics")
    assert response.status_code == 200, response.text
    return [point["step"] for point in response.json()["items"]]


def assert_exact_metric_history(stack: Stack, job: dict[str, Any]) -> None:
    """Steps are exactly metric_interval, 2 * metric_interval, ..., steps (none twice or lost)."""
    interval, steps = job["training"]["metric_interval"], job["training"]["steps"]
    expected = list(range(interval, steps + 1, interval))
    if expected[-1] != steps:
        expected.append(steps)
    assert metric_steps(stack, job["id"]) == expected


def worker_logs(stack: Stack) -> str:
    """Every log of this stack's workers so far (killed ones included)."""
    directory = stack.worker.log_path.parent
    return "\n".join(path.read_text(errors="replace") for path in sorted(directory.glob("*.log")))
