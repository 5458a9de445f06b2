"""The broker and the database restarted under live jobs, on a private PostgreSQL + Redis.

Faults injected: Redis stopped while one job runs and another waits in its queue, a job
submitted while it is down, then Redis started again empty (no persistence: every message is
lost); PostgreSQL stopped (fast shutdown: connections cut, open transactions rolled back) for a
few seconds in the middle of training, then started again. Every job must end ``succeeded``
with its full metric history; none may stay ``queued`` or ``running``.
"""

from __future__ import annotations

import time

import pytest

from tests.service.conftest import PrivateServers
from tests.service.faults import RecordProperty, assert_exact_metric_history, builtin_points
from tests.service.payloads import POINTS_FLOW, submit_job
from tests.service.stack import Stack, poll

pytestmark = [pytest.mark.service, pytest.mark.timeout(300)]

SHORT = {"steps": 20, "batch_size": 32, "metric_interval": 10, "seed": 7}
DATABASE_DOWN_S = 2.0


def _ready(stack: Stack) -> dict:
    response, _ = poll(
        lambda: stack.client.get("/readyz"), lambda r: r.status_code == 200, 30, interval_s=0.5
    )
    return response.json()


def test_redis_restart_loses_no_running_queued_or_unsent_job(
    private_stack: Stack, private_servers: PrivateServers
) -> None:
    stack = private_stack
    dataset_id = builtin_points(stack)
    running = submit_job(
        stack.client,
        dataset_id,
        POINTS_FLOW,
        {"steps": 60, "batch_size": 32, "metric_interval": 10, "checkpoint_interval": 20},
    )
    waiting = submit_job(stack.client, dataset_id, POINTS_FLOW, SHORT)
    stack.wait_until(running["id"], lambda j: j["state"] == "running" and j["step"] >= 10)
    assert stack.client.get(f"/v1/jobs/{waiting['id']}").json()["state"] == "queued"

    private_servers.redis.stop()
    down = stack.client.get("/readyz")
    assert down.status_code == 503 and down.json()["broker"].startswith("unavailable")
    unsent = submit_job(stack.client, dataset_id, POINTS_FLOW, SHORT)
    assert unsent["state"] == "queued"
    private_servers.redis.start()

    for job in (running, waiting, unsent):
        final = stack.wait_for_job(job["id"], timeout_s=120)
        assert final["error"] is None
        assert_exact_metric_history(stack, final)
    assert _ready(stack)["broker"] == "ok"


def test_postgres_restart_during_training(
    private_stack: Stack, private_servers: PrivateServers, record_property: RecordProperty
) -> None:
    stack = private_stack
    training = {"steps": 60, "batch_size": 32, "metric_interval": 5, "checkpoint_interval": 20}
    job = submit_job(stack.client, builtin_points(stack), POINTS_FLOW, training)
    stack.wait_until(job["id"], lambda j: j["state"] == "running" and j["step"] >= 10)

    private_servers.postgres.stop()
    time.sleep(DATABASE_DOWN_S)
    private_servers.postgres.start()

    assert _ready(stack)["database"] == "ok"
    final = stack.wait_for_job(job["id"], timeout_s=120)
    assert final["error"] is None and final["step"] == 60 and final["attempts"] <= 2
    record_property("attempts", final["attempts"])
    assert_exact_metric_history(stack, final)
