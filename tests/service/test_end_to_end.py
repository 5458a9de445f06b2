"""End to end on each stack: upload, train, watch, score, sample, download, cancel, recover.

Every test runs once on PostgreSQL + Redis and once on the embedded default (see conftest).
"""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from PIL import Image

from app.core.db.base import new_id, utcnow
from app.core.db.models import Checkpoint, Job
from app.core.db.session import session_scope
from flows.checkpoint import load_flow, read_checkpoint_info
from flows.data import load_builtin
from flows.scoring import score
from tests.service.payloads import (
    POINTS_FLOW,
    TINY_TRAINING,
    Trained,
    digits_images,
    png_bytes,
    submit_job,
)
from tests.service.stack import Stack

pytestmark = [pytest.mark.service, pytest.mark.timeout(300)]


def test_health_and_readiness(stack: Stack) -> None:
    assert stack.client.get("/healthz").json() == {"status": "ok"}
    ready = stack.client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["database"] == "ok" and ready.json()["broker"] == "ok"
    assert ready.json()["schema_revision"] == "0003"


def test_datasets_summaries_listing_and_preview(stack: Stack, trained: Trained) -> None:
    points, images = trained.points_dataset, trained.image_dataset
    assert points["kind"] == "points" and points["shape"] == [2] and points["count"] == 512
    assert points["dtype"] == "float32" and len(points["checksum"]) == 64
    assert images["kind"] == "images" and images["shape"] == [1, 8, 8]
    assert images["count"] == 96 and images["dtype"] == "uint8"
    assert np.array_equal(images["checksum"], load_builtin("digits", n=96, seed=0).checksum()), (
        "an uploaded PNG zip must round-trip to the same array"
    )

    listed = {item["id"] for item in stack.client.get("/v1/datasets").json()["items"]}
    assert {points["id"], images["id"]} <= listed
    assert stack.client.get(f"/v1/datasets/{points['id']}").json() == points
    for dataset in (points, images):
        preview = stack.client.get(f"/v1/datasets/{dataset['id']}/preview.png")
        assert preview.status_code == 200
        assert preview.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(preview.content)).size[0] > 8


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".csv"])
def test_upload_point_files(stack: Stack, suffix: str) -> None:
    points = np.random.default_rng(0).normal(size=(50, 2)).astype(np.float32)
    buffer = io.BytesIO()
    if suffix == ".npy":
        np.save(buffer, points)
    elif suffix == ".npz":
        np.savez(buffer, x=points)
    else:
        text = io.StringIO()
        csv.writer(text).writerows(points.tolist())
        buffer.write(text.getvalue().encode())
    response = stack.client.post(
        "/v1/datasets", files={"file": (f"points{suffix}", buffer.getvalue())}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["kind"], body["shape"], body["count"]) == ("points", [2], 50)
    assert body["name"] == f"points{suffix}"
    assert stack.client.delete(f"/v1/datasets/{body['id']}").status_code == 204
    assert stack.client.get(f"/v1/datasets/{body['id']}").status_code == 404


def test_job_progress_and_metric_history(stack: Stack, trained: Trained) -> None:
    for job in (trained.points_job, trained.image_job):
        assert job["step"] == job["total_steps"] == 30
        assert job["progress"] == 100.0 and job["attempts"] == 1 and job["error"] is None
        assert job["finished_at"] is not None
        history = stack.client.get(f"/v1/jobs/{job['id']}/metrics").json()["items"]
        assert [point["step"] for point in history] == [10, 20, 30]
        assert all(np.isfinite(point["values"]["loss"]) for point in history)
        assert job["latest_metrics"]["loss"] == pytest.approx(history[-1]["values"]["loss"])
        later = stack.client.get(f"/v1/jobs/{job['id']}/metrics", params={"after_step": 10})
        assert [point["step"] for point in later.json()["items"]] == [20, 30]
    assert "nll" in trained.points_job["latest_metrics"]
    assert "bpd" in trained.image_job["latest_metrics"]
    listed = stack.client.get("/v1/jobs", params={"state": "succeeded"}).json()["items"]
    assert {trained.points_job["id"], trained.image_job["id"]} <= {job["id"] for job in listed}


def test_model_description(stack: Stack, trained: Trained) -> None:
    model = stack.client.get(f"/v1/models/{trained.points_job['id']}").json()
    assert model["job_state"] == "succeeded" and model["final"] is True
    assert model["step"] == 30 and model["kind"] == "points" and model["data_shape"] == [2]
    assert model["flow"]["group"] == "C4" and model["training"]["steps"] == 30


def test_score_points_exact_and_estimate(stack: Stack, trained: Trained) -> None:
    url = f"/v1/models/{trained.points_job['id']}/log-prob"
    inputs = [[4.0, 0.0], [0.0, 4.0], [0.5, -0.5]]
    exact = stack.client.post(url, json={"inputs": inputs, "method": "exact"})
    assert exact.status_code == 200, exact.text
    exact = exact.json()
    assert exact["method"] == "exact" and exact["stderr"] is None and exact["count"] == 3
    assert exact["bits_per_dim"] is None
    # C4-invariance: (4, 0) and (0, 4) are one rotation apart.
    assert exact["log_prob"][0] == pytest.approx(exact["log_prob"][1], abs=1e-4)

    estimate = stack.client.post(url, json={"inputs": inputs, "method": "estimate", "seed": 5})
    assert estimate.status_code == 200, estimate.text
    estimate = estimate.json()
    assert estimate["method"] == "estimate" and len(estimate["stderr"]) == 3
    for value, reference, stderr in zip(
        estimate["log_prob"], exact["log_prob"], estimate["stderr"], strict=True
    ):
        assert stderr >= 0 and abs(value - reference) <= 6 * stderr + 1e-3


def test_score_images_from_png_and_json(stack: Stack, trained: Trained) -> None:
    url = f"/v1/models/{trained.image_job['id']}/log-prob"
    images = digits_images(3)
    files = [
        ("files", (f"d{i}.png", png_bytes(image), "image/png")) for i, image in enumerate(images)
    ]
    from_png = stack.client.post(url, files=files, data={"method": "exact", "seed": "7"})
    assert from_png.status_code == 200, from_png.text
    from_json = stack.client.post(
        url, json={"inputs": images.tolist(), "method": "exact", "seed": 7}
    )
    assert from_json.status_code == 200, from_json.text
    from_png, from_json = from_png.json(), from_json.json()
    assert from_png["method"] == "exact" and len(from_png["bits_per_dim"]) == 3
    assert from_png["log_prob"] == pytest.approx(from_json["log_prob"], rel=1e-6)
    assert all(0 < bpd < 16 for bpd in from_png["bits_per_dim"])

    estimate = stack.client.post(url, files=files, data={"method": "estimate"})
    assert estimate.status_code == 200, estimate.text
    assert estimate.json()["method"] == "estimate" and len(estimate.json()["stderr"]) == 3


def test_samples_in_every_format(stack: Stack, trained: Trained) -> None:
    for job, item_shape, dtype in (
        (trained.points_job, [2], "float32"),
        (trained.image_job, [1, 8, 8], "uint8"),
    ):
        url = f"/v1/models/{job['id']}/samples"
        as_json = stack.client.post(url, json={"n": 5, "seed": 2, "format": "json"})
        assert as_json.status_code == 200, as_json.text
        body = as_json.json()
        assert body["shape"] == [5, *item_shape] and body["dtype"] == dtype
        assert np.asarray(body["samples"]).shape == (5, *item_shape)
        assert body["error_bounds"] is None  # only when asked for
        bounded = stack.client.post(url, json={"n": 5, "seed": 2, "error_bounds": True}).json()
        assert bounded["samples"] == body["samples"]
        bounds = bounded["error_bounds"]
        assert len(bounds) == 5 and all(0.0 <= bound < 1e-2 for bound in bounds)

        as_npy = stack.client.post(url, json={"n": 5, "seed": 2, "format": "npy"})
        assert as_npy.headers["content-type"] == "application/octet-stream"
        array = np.load(io.BytesIO(as_npy.content), allow_pickle=False)
        assert array.dtype == np.dtype(dtype)
        np.testing.assert_allclose(array, np.asarray(body["samples"]), rtol=1e-6)

        as_png = stack.client.post(url, json={"n": 9, "seed": 2, "format": "png"})
        assert as_png.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(as_png.content)).format == "PNG"


def test_checkpoint_download_loads_with_flows(stack: Stack, trained: Trained) -> None:
    job = trained.points_job
    response = stack.client.get(f"/v1/models/{job['id']}/checkpoint")
    assert response.status_code == 200
    assert 'filename="model.safetensors"' in response.headers["content-disposition"]
    info = read_checkpoint_info(response.content)
    assert info.step == 30 and info.flow_config.group == "C4"
    flow = load_flow(response.content)
    inputs = np.array([[4.0, 0.0], [1.0, 1.0]], dtype=np.float32)
    local = score(flow, inputs, method="exact")
    remote = stack.client.post(
        f"/v1/models/{job['id']}/log-prob", json={"inputs": inputs.tolist(), "method": "exact"}
    ).json()
    np.testing.assert_allclose(local.log_prob, remote["log_prob"], rtol=1e-5, atol=1e-5)


def test_cancel_running_job_and_dataset_deletion(stack: Stack, trained: Trained) -> None:
    response = stack.client.post(
        "/v1/datasets/builtin", json={"name": "rings", "n": 256, "seed": 2}
    )
    dataset = response.json()
    long_run = {**TINY_TRAINING, "steps": 100_000, "metric_interval": 5}
    job = submit_job(stack.client, dataset["id"], POINTS_FLOW, long_run)

    refused = stack.client.delete(f"/v1/datasets/{dataset['id']}")
    assert refused.status_code == 409 and refused.json()["field"] == "dataset_id"
    assert "queued or running" in refused.json()["message"]

    stack.wait_until(job["id"], lambda j: j["state"] == "running" and j["step"] >= 5)
    running = stack.client.get(f"/v1/jobs/{job['id']}").json()
    assert running["eta_seconds"] is not None and 0 < running["progress"] < 100
    cancelled = stack.client.post(f"/v1/jobs/{job['id']}/cancel")
    assert cancelled.status_code == 202 and cancelled.json()["cancel_requested"] is True
    final = stack.wait_for_job(job["id"], states=("cancelled",))
    assert 5 <= final["step"] < 100_000

    model = stack.client.get(f"/v1/models/{job['id']}").json()
    assert model["final"] is False and model["step"] == final["step"]
    again = stack.client.post(f"/v1/jobs/{job['id']}/cancel")
    assert again.status_code == 409 and again.json()["field"] == "job_id"
    assert "already cancelled" in again.json()["message"]

    assert stack.client.delete(f"/v1/datasets/{dataset['id']}").status_code == 204
    assert stack.client.get(f"/v1/jobs/{job['id']}").json()["dataset_id"] is None


def test_cancel_queued_job_is_immediate(stack: Stack, trained: Trained) -> None:
    dataset_id = trained.points_dataset["id"]
    blocker = submit_job(
        stack.client, dataset_id, POINTS_FLOW, {**TINY_TRAINING, "steps": 100_000}
    )
    queued = submit_job(stack.client, dataset_id, POINTS_FLOW, TINY_TRAINING)
    response = stack.client.post(f"/v1/jobs/{queued['id']}/cancel")
    assert response.status_code == 202 and response.json()["state"] == "cancelled"
    stack.client.post(f"/v1/jobs/{blocker['id']}/cancel")
    stack.wait_for_job(blocker["id"], states=("cancelled",))
    assert stack.client.get(f"/v1/jobs/{queued['id']}").json()["attempts"] == 0


def _insert_job(stack: Stack, source_job: dict[str, Any], **values: Any) -> str:
    """Writes a job row as a crashed worker would have left it."""
    job_id = new_id("job")
    with session_scope(stack.settings.database_url) as session:
        session.add(
            Job(
                id=job_id,
                owner=stack.settings.default_owner,
                dataset_id=source_job["dataset_id"],
                flow_config=source_job["flow"],
                train_config=source_job["training"],
                total_steps=source_job["total_steps"],
                cancel_requested=False,
                attempt_start_step=0,
                **values,
            )
        )
    return job_id


def _copy_checkpoint(stack: Stack, source_job_id: str, job_id: str, step: int) -> str:
    """Stores the source job's checkpoint of ``step`` for ``job_id``, not flagged final, as
    the worker's on_checkpoint would have; returns its sha256."""
    with session_scope(stack.settings.database_url) as session:
        checkpoint = session.query(Checkpoint).filter_by(job_id=source_job_id, step=step).one()
        session.add(
            Checkpoint(
                id=new_id("ckpt"),
                owner=checkpoint.owner,
                job_id=job_id,
                step=step,
                final=False,
                size_bytes=checkpoint.size_bytes,
                sha256=checkpoint.sha256,
                blob=checkpoint.blob,
            )
        )
        return checkpoint.sha256


def _dead_workers_job(stack: Stack, source: dict, step: int) -> str:
    """A copy of ``source`` left running at ``step`` by a worker whose heartbeat stopped an
    hour ago (the reaper re-queues it)."""
    long_ago = utcnow() - timedelta(hours=1)
    return _insert_job(
        stack,
        source,
        state="running",
        step=step,
        attempts=1,
        worker="dead@nowhere",
        heartbeat_at=long_ago,
        started_at=long_ago,
        enqueued_at=long_ago,
    )


def test_reaper_resumes_a_dead_workers_job_from_its_checkpoint(
    stack: Stack, trained: Trained
) -> None:
    source = trained.points_job
    job_id = _dead_workers_job(stack, source, step=20)
    _copy_checkpoint(stack, source["id"], job_id, step=20)
    resumed = stack.wait_for_job(job_id)
    assert resumed["attempts"] == 2 and resumed["step"] == 30
    history = stack.client.get(f"/v1/jobs/{job_id}/metrics").json()["items"]
    assert [point["step"] for point in history] == [30], "a resumed job starts at its checkpoint"
    original = stack.client.get(f"/v1/jobs/{source['id']}/metrics").json()["items"][-1]
    # The checkpoint carries the optimizer and random state: the resumed run is the same run.
    assert history[0]["values"]["loss"] == pytest.approx(original["values"]["loss"], rel=1e-4)


def test_a_worker_dead_after_training_leaves_its_final_checkpoint_for_the_next_attempt(
    stack: Stack, trained: Trained
) -> None:
    # The worker stores the last checkpoint as training ends and only flags it final when it
    # records the outcome: a worker that dies in between has left the final step's checkpoint,
    # and the next attempt trains no step and keeps that checkpoint as the model.
    source = trained.points_job
    job_id = _dead_workers_job(stack, source, step=30)
    sha256 = _copy_checkpoint(stack, source["id"], job_id, step=30)
    finished = stack.wait_for_job(job_id)
    assert finished["state"] == "succeeded" and finished["attempts"] == 2
    assert finished["step"] == 30 and finished["error"] is None
    assert stack.client.get(f"/v1/jobs/{job_id}/metrics").json()["items"] == []
    model = stack.client.get(f"/v1/models/{job_id}").json()
    assert model["final"] is True and model["step"] == 30
    with session_scope(stack.settings.database_url) as session:
        stored = session.query(Checkpoint).filter_by(job_id=job_id).all()
        assert [(row.step, row.final, row.sha256) for row in stored] == [(30, True, sha256)]


def test_reaper_fails_a_job_out_of_attempts_and_sends_unsent_ones(
    stack: Stack, trained: Trained
) -> None:
    source = trained.points_job
    long_ago = utcnow() - timedelta(hours=1)
    exhausted = _insert_job(
        stack,
        source,
        state="running",
        step=0,
        attempts=stack.settings.max_attempts,
        heartbeat_at=long_ago,
        worker="dead@nowhere",
    )
    unsent = _insert_job(stack, source, state="queued", step=0, attempts=0, enqueued_at=None)
    failed = stack.wait_for_job(exhausted, states=("failed",))
    assert "gave up after 3 attempt(s)" in failed["error"]
    assert stack.wait_for_job(unsent)["attempts"] == 1
