"""Every flow family trains through the service end to end: job, metrics, scoring, sampling.

The jobs of all families are submitted at once (one module-scoped fixture per stack), so the
worker trains them back to back while the first assertions run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.service.payloads import TINY_TRAINING, submit_job
from tests.service.stack import Stack

pytestmark = [pytest.mark.service, pytest.mark.timeout(400)]

RGB = [3, 8, 8]
# family -> (built-in data set, flow config); each is tiny, the point is the path.
FAMILY_JOBS: dict[str, tuple[str, dict[str, Any]]] = {
    "coupling": ("image_patches", {"family": "coupling", "group": "D4", "data_shape": RGB}),
    "coupling-soft": (
        "digits",
        {
            "family": "coupling",
            "group": "C4",
            "data_shape": [1, 8, 8],
            "coupling_split": "checkerboard",
        },
    ),
    "iaf": ("image_patches", {"family": "iaf", "group": "C4", "data_shape": RGB}),
    "linear": ("image_patches", {"family": "linear", "group": "D4", "data_shape": RGB}),
    "mixed": (
        "eight_gaussians",
        {"family": "mixed", "blocks": ["linear", "residual"], "group": "C4", "data_shape": [2]},
    ),
    "nsf": ("image_patches", {"family": "nsf", "group": "D4", "data_shape": RGB}),
    "nsf-default": ("digits", {"group": "D4", "data_shape": [1, 8, 8]}),
    "polar": ("eight_gaussians", {"family": "polar", "group": "D8", "data_shape": [2]}),
    "polar-default": ("eight_gaussians", {"group": "C4", "data_shape": [2]}),
    "augmented-residual": (
        "eight_gaussians",
        {"family": "residual", "group": "C4", "data_shape": [2], "padding_channels": 1},
    ),
    "augmented-coupling": (
        "digits",
        {"family": "coupling", "group": "C4", "data_shape": [1, 8, 8], "padding_channels": 1},
    ),
}


@pytest.fixture(scope="module")
def family_jobs(stack: Stack) -> dict[str, dict[str, Any]]:
    datasets = {}
    for name in {dataset for dataset, _ in FAMILY_JOBS.values()}:
        response = stack.client.post(
            "/v1/datasets/builtin", json={"name": name, "n": 128, "seed": 4}
        )
        assert response.status_code == 201, response.text
        datasets[name] = response.json()["id"]
    training = {**TINY_TRAINING, "steps": 20, "batch_size": 16}
    submitted = {
        family: submit_job(
            stack.client, datasets[dataset], {"width": 2, "depth": 2, **flow}, training
        )
        for family, (dataset, flow) in FAMILY_JOBS.items()
    }
    return {family: stack.wait_for_job(job["id"]) for family, job in submitted.items()}


@pytest.mark.parametrize("family", FAMILY_JOBS)
def test_family_trains_scores_and_samples_through_the_service(
    stack: Stack, family_jobs: dict[str, dict[str, Any]], family: str
) -> None:
    job = family_jobs[family]
    flow = FAMILY_JOBS[family][1]
    assert job["state"] == "succeeded" and job["step"] == 20
    history = stack.client.get(f"/v1/jobs/{job['id']}/metrics").json()["items"]
    assert [point["step"] for point in history] == [10, 20]
    assert all(np.isfinite(value) for point in history for value in point["values"].values())
    augmented = flow.get("padding_channels", 0) > 0
    is_points = flow["data_shape"] == [2]
    metric = ("val_nll" if is_points else "val_bpd") + ("_bound" if augmented else "")
    assert metric in job["latest_metrics"], job["latest_metrics"]

    samples = stack.client.post(f"/v1/models/{job['id']}/samples", json={"n": 4, "seed": 1})
    assert samples.status_code == 200, samples.text
    batch = samples.json()["samples"]
    assert np.asarray(batch).shape == (4, *flow["data_shape"])

    scored = stack.client.post(
        f"/v1/models/{job['id']}/log-prob", json={"inputs": batch, "method": "auto"}
    )
    assert scored.status_code == 200, scored.text
    body = scored.json()
    assert body["count"] == 4 and all(np.isfinite(body["log_prob"]))
    assert body["lower_bound"] is augmented
    # Families without residual blocks have analytic log-dets: scoring is always exact.
    if "residual" not in flow.get("blocks", []) and not augmented:
        assert body["method"] == "exact" and body["stderr"] is None
    if augmented:
        assert len(body["stderr"]) == 4
