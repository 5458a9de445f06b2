"""Progress between metric steps, list totals, the model list and job deletion, on each stack.

The worker's heartbeat (every 0.5 s here) carries the step its loop has reached, a smoothed
speed and the mean loss since the previous beat, so a job whose metrics come every 100,000
steps still shows its step, speed, recent loss and an ETA that is the steps left over that
speed.
"""

from __future__ import annotations

import math

import pytest
from sqlalchemy import func, select

from app.core.db.models import Checkpoint, Metric
from app.core.db.session import session_scope
from tests.service.payloads import POINTS_FLOW, TINY_TRAINING, Trained, submit_job
from tests.service.stack import Stack

pytestmark = [pytest.mark.service, pytest.mark.timeout(300)]


def test_step_speed_and_eta_move_between_metric_steps(stack: Stack, trained: Trained) -> None:
    training = {**TINY_TRAINING, "steps": 200_000, "metric_interval": 100_000}
    job = submit_job(stack.client, trained.points_dataset["id"], POINTS_FLOW, training)
    first = stack.wait_until(
        job["id"], lambda j: j["state"] == "running" and j["steps_per_second"] is not None
    )
    later = stack.wait_until(job["id"], lambda j: j["step"] > first["step"] and j["step"] > 0)
    stack.client.post(f"/v1/jobs/{job['id']}/cancel")
    assert later["latest_metrics"] is None, "no metric step was reached: the heartbeat moved it"
    assert math.isfinite(later["live_loss"]), "the heartbeat carries the recent steps' loss"
    assert 0 < later["progress"] < 100 and later["heartbeat_at"] is not None
    speed = later["steps_per_second"]
    assert speed > 0
    assert later["examples_per_second"] == pytest.approx(speed * 32, rel=1e-3)
    assert later["eta_seconds"] == pytest.approx((200_000 - later["step"]) / speed, rel=1e-2)
    final = stack.wait_for_job(job["id"], states=("cancelled",))
    assert final["steps_per_second"] is None and final["eta_seconds"] is None
    assert final["live_loss"] is None


def test_lists_carry_the_total_over_all_pages(stack: Stack, trained: Trained) -> None:
    for path in ("/v1/datasets", "/v1/jobs", "/v1/models"):
        everything = stack.client.get(path, params={"limit": 1000}).json()
        assert everything["total"] == len(everything["items"]) >= 2, path
        page = stack.client.get(path, params={"limit": 1, "offset": 1}).json()
        assert page["total"] == everything["total"] and len(page["items"]) == 1, path
        assert page["items"][0]["id"] == everything["items"][1]["id"], path
    succeeded = stack.client.get("/v1/jobs", params={"state": "succeeded", "limit": 1}).json()
    listed = stack.client.get("/v1/jobs", params={"state": "succeeded", "limit": 1000}).json()
    assert succeeded["total"] == len(listed["items"])


def test_model_list_items_are_the_model_descriptions(stack: Stack, trained: Trained) -> None:
    listed = stack.client.get("/v1/models", params={"limit": 1000}).json()["items"]
    by_id = {model["id"]: model for model in listed}
    for job in (trained.points_job, trained.image_job):
        assert by_id[job["id"]] == stack.client.get(f"/v1/models/{job['id']}").json()
    assert all(model["job_state"] == "succeeded" and model["final"] for model in listed)


def test_deleting_a_finished_job_removes_its_model_checkpoints_and_metrics(
    stack: Stack, trained: Trained, other_tenant_client
) -> None:
    training = {**TINY_TRAINING, "steps": 10}
    job = submit_job(stack.client, trained.points_dataset["id"], POINTS_FLOW, training)
    refused = stack.client.delete(f"/v1/jobs/{job['id']}")
    if refused.status_code == 409:  # still queued or running
        assert refused.json()["field"] == "job_id" and "finished" in refused.json()["message"]
    stack.wait_for_job(job["id"])
    assert stack.client.get(f"/v1/models/{job['id']}").status_code == 200  # now cached
    scoring = {"inputs": [[0.5, -0.5]], "method": "exact"}
    scored = stack.client.post(f"/v1/models/{job['id']}/log-prob", json=scoring)
    assert scored.status_code == 200  # the resolution and batcher caches hold the model now
    assert other_tenant_client.delete(f"/v1/jobs/{job['id']}").status_code == 404

    assert stack.client.delete(f"/v1/jobs/{job['id']}").status_code == 204
    for path in ("", "/metrics"):
        assert stack.client.get(f"/v1/jobs/{job['id']}{path}").status_code == 404
    assert stack.client.get(f"/v1/models/{job['id']}").status_code == 404
    scored = stack.client.post(f"/v1/models/{job['id']}/log-prob", json=scoring)
    assert scored.status_code == 404  # no cache serves a deleted model
    assert stack.client.delete(f"/v1/jobs/{job['id']}").status_code == 404
    listed = stack.client.get("/v1/models", params={"limit": 1000}).json()["items"]
    assert job["id"] not in {model["id"] for model in listed}
    with session_scope(stack.settings.database_url) as session:
        for table in (Checkpoint, Metric):
            count = select(func.count()).select_from(table).where(table.job_id == job["id"])
            assert session.scalar(count) == 0, table.__tablename__
    # The data set and the other jobs are untouched.
    assert stack.client.get(f"/v1/datasets/{trained.points_dataset['id']}").status_code == 200
    assert stack.client.get(f"/v1/models/{trained.points_job['id']}").status_code == 200


def test_a_running_job_cannot_be_deleted(stack: Stack, trained: Trained) -> None:
    training = {**TINY_TRAINING, "steps": 100_000, "metric_interval": 5}
    job = submit_job(stack.client, trained.points_dataset["id"], POINTS_FLOW, training)
    stack.wait_until(job["id"], lambda j: j["state"] == "running")
    refused = stack.client.delete(f"/v1/jobs/{job['id']}")
    stack.client.post(f"/v1/jobs/{job['id']}/cancel")
    assert refused.status_code == 409, refused.text
    assert refused.json()["field"] == "job_id"
    assert "is running; only a finished job can be deleted" in refused.json()["message"]
    stack.wait_for_job(job["id"], states=("cancelled",))
    assert stack.client.delete(f"/v1/jobs/{job['id']}").status_code == 204
