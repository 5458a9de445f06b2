"""Workers that die or hang mid-training, on a private PostgreSQL + Redis (see conftest).

Faults injected: SIGKILL to a worker's whole process group (its main process, which runs the
reaper, and the prefork child that trains), once and then on every attempt; a training loop hung
in a database write (the ``checkpoints`` table locked by the test) while its heartbeat thread
keeps beating.
"""

from __future__ import annotations

import re
import time

import psycopg
import pytest

from tests.service.conftest import PrivateServers
from tests.service.faults import (
    RecordProperty,
    assert_exact_metric_history,
    builtin_points,
    worker_logs,
)
from tests.service.payloads import POINTS_FLOW, submit_job
from tests.service.stack import Stack, poll_job

pytestmark = [pytest.mark.service, pytest.mark.timeout(300)]


def _progressing(attempt: int, at_least_step: int = 0):
    """A job condition: ``attempt`` is running and has trained at least one metric interval."""

    def condition(job: dict) -> bool:
        return (
            job["state"] == "running"
            and job["attempts"] == attempt
            and job["eta_seconds"] is not None
            and job["step"] >= at_least_step
        )

    return condition


def test_sigkill_mid_training_resumes_from_checkpoint_and_finishes_once(
    private_stack: Stack, record_property: RecordProperty
) -> None:
    stack = private_stack
    training = {
        "steps": 60,
        "batch_size": 32,
        "metric_interval": 5,
        "checkpoint_interval": 20,
        "seed": 4,
    }
    job = submit_job(stack.client, builtin_points(stack), POINTS_FLOW, training)
    # Past a checkpoint and with metrics written after it, which the resumed run must redo.
    killed = stack.wait_until(job["id"], _progressing(1, at_least_step=25))
    stack.replace_worker()

    final = stack.wait_for_job(job["id"])
    assert final["attempts"] == 2 and final["step"] == 60 and final["error"] is None
    assert_exact_metric_history(stack, final)
    resumed = re.findall(rf"job {job['id']} resumes from step (\d+)", stack.worker.log_tail(400))
    assert len(resumed) == 1 and int(resumed[0]) % 20 == 0
    record_property("killed_at_step", killed["step"])
    record_property("resumed_from_step", int(resumed[0]))
    assert 20 <= int(resumed[0]) <= killed["step"] + training["metric_interval"]
    assert worker_logs(stack).count(f"job {job['id']} succeeded at step 60") == 1
    model = stack.client.get(f"/v1/models/{job['id']}").json()
    assert model["final"] is True and model["step"] == 60


def test_a_job_that_keeps_killing_workers_is_failed_after_max_attempts(
    private_stack: Stack,
) -> None:
    stack = private_stack
    training = {"steps": 100_000, "batch_size": 32, "metric_interval": 5, "seed": 5}
    job = submit_job(stack.client, builtin_points(stack), POINTS_FLOW, training)
    max_attempts = stack.settings.max_attempts
    for attempt in range(1, max_attempts + 1):
        stack.wait_until(job["id"], _progressing(attempt))
        stack.replace_worker()
    # The last replacement's reaper finds the stale heartbeat of the last attempt and gives up.
    failed = stack.wait_for_job(job["id"], states=("failed",), timeout_s=60)
    assert failed["attempts"] == max_attempts
    assert f"gave up after {max_attempts} attempt(s)" in failed["error"]
    assert "stopped sending heartbeats" in failed["error"]
    assert stack.client.get("/readyz").status_code == 200


def test_hung_training_loop_is_requeued_although_its_heartbeat_thread_lives(
    private_stack: Stack, private_servers: PrivateServers, record_property: RecordProperty
) -> None:
    stack = private_stack
    stall_timeout_s = stack.settings.stall_timeout_s
    training = {
        "steps": 60,
        "batch_size": 32,
        "metric_interval": 5,
        "checkpoint_interval": 10,
        "seed": 6,
    }
    database = private_servers.database_url.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(database) as blocker:
        # Held until released below: the first checkpoint write of the job waits on it forever.
        blocker.execute("LOCK TABLE checkpoints IN EXCLUSIVE MODE")
        job = submit_job(stack.client, builtin_points(stack), POINTS_FLOW, training)
        hung = stack.wait_until(job["id"], lambda j: j["state"] == "running" and j["step"] >= 10)
        hung_since = time.monotonic()
        # Before the stall timeout withholds it, the heartbeat thread keeps beating.
        beating, _ = poll_job(
            stack.client,
            job["id"],
            lambda j: j["heartbeat_at"] > hung["heartbeat_at"] or j["step"] != 10,
            timeout_s=stall_timeout_s / 2,
        )
        assert beating["step"] == 10 and beating["heartbeat_at"] > hung["heartbeat_at"], (
            "the heartbeat thread keeps beating while the loop hangs"
        )
        # The worker has one slot: a second attempt can only start once the hung child exits.
        stack.wait_until(
            job["id"],
            lambda j: j["attempts"] == 2,
            timeout_s=stall_timeout_s + stack.settings.heartbeat_timeout_s + 30,
        )
        recovered_after_s = time.monotonic() - hung_since
        record_property("hung_loop_recovered_after_s", round(recovered_after_s, 1))
        blocker.rollback()
    # Not before the stall timeout; then a heartbeat timeout and a reaper pass, plus slack.
    assert stall_timeout_s <= recovered_after_s + 1.0
    assert recovered_after_s <= stall_timeout_s + stack.settings.heartbeat_timeout_s + 15

    final = stack.wait_for_job(job["id"])
    assert final["attempts"] == 2 and final["step"] == 60
    assert_exact_metric_history(stack, final)
    logs = worker_logs(stack)
    assert f"job {job['id']}: no training progress for" in logs
    assert f"job {job['id']}: attempt 1 was re-queued while its training loop hung" in logs


def test_a_worker_restarted_under_a_stable_name_resumes_its_job_at_once(
    private_stack: Stack, record_property: RecordProperty
) -> None:
    stack = private_stack
    # A heartbeat timeout far beyond the test's patience: only the restart path can recover.
    named: dict[str, str | None] = {
        "EFNF_WORKER_NAME": "efnf-stable",
        "EFNF_HEARTBEAT_TIMEOUT_S": "300",
    }
    unnamed = {key: stack.worker.env.get(key) for key in named}
    stack.replace_worker(named)
    try:
        training = {
            "steps": 40,
            "batch_size": 32,
            "metric_interval": 5,
            "checkpoint_interval": 10,
            "seed": 9,
        }
        job = submit_job(stack.client, builtin_points(stack), POINTS_FLOW, training)
        first = stack.wait_until(job["id"], _progressing(1, at_least_step=15))
        assert first["worker"].startswith("efnf-stable@")
        killed_at = time.monotonic()
        stack.replace_worker(named)
        # The second attempt may finish its few remaining steps between two polls.
        resumed = _progressing(2)
        stack.wait_until(
            job["id"],
            lambda job: resumed(job) or (job["state"] == "succeeded" and job["attempts"] == 2),
            timeout_s=90,
        )
        resumed_after_s = time.monotonic() - killed_at
        record_property("restarted_worker_resumed_after_s", round(resumed_after_s, 1))
        final = stack.wait_for_job(job["id"])
        assert final["attempts"] == 2
        assert_exact_metric_history(stack, final)
        assert f"re-queued its jobs ['{job['id']}'] at once" in stack.worker.log_tail(400)
        assert resumed_after_s < 90 < float(named["EFNF_HEARTBEAT_TIMEOUT_S"])
    finally:
        stack.replace_worker(unnamed)
