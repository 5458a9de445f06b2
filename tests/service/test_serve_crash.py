"""A SIGKILLed ``python -m app serve`` takes its worker with it (issue 12, item 5).

The worker runs in a session of its own; before, it went on training for half an hour after its
launcher was killed, under the name the next launcher's worker uses, and the crash used up one
of the job's attempts. Now the worker sees its launcher's pipe close, puts the job back in the
queue with the attempt refunded, and kills its process group.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from app.core.db.models import Job
from app.core.db.session import get_engine, session_scope
from app.key_admin import LOCAL_KEY_FILE
from tests.service.payloads import POINTS_FLOW
from tests.service.private_servers import spare_port
from tests.service.stack import REPO_ROOT, embedded_env, poll, wait_for_health

pytestmark = [pytest.mark.service, pytest.mark.slow, pytest.mark.timeout(240)]

# The worker and its training child must be gone this soon after the launcher's SIGKILL.
GONE_WITHIN_S = 10.0


def _process_group(pgid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # Fields after the command (which may hold spaces): state, ppid, pgrp, ...
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry))
    return members


def _children(pid: int) -> list[int]:
    # Every thread's list: the worker is started by the launcher's supervisor thread.
    return [
        int(child)
        for children in Path(f"/proc/{pid}/task").glob("*/children")
        for child in children.read_text().split()
    ]


def test_killed_launcher_takes_its_worker_and_refunds_the_attempt(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    port = spare_port()
    env = embedded_env(
        data_dir,
        EFNF_HEARTBEAT_INTERVAL_S="0.5",
        EFNF_HEARTBEAT_TIMEOUT_S="4",
        PYTHONPATH=str(REPO_ROOT),
        OMP_NUM_THREADS="1",
    )
    database_url = env["EFNF_DATABASE_URL"]
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "app", "serve", "--port", str(port)],
            cwd=REPO_ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    worker_group = None
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_for_health(base_url, launcher, log)
        key = (data_dir / LOCAL_KEY_FILE).read_text().strip()
        client = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )
        dataset = client.post("/v1/datasets/builtin", json={"name": "eight_gaussians", "n": 256})
        assert dataset.status_code == 201, dataset.text
        training = {"steps": 200_000, "batch_size": 16, "metric_interval": 100}
        job = client.post(
            "/v1/jobs",
            json={"dataset_id": dataset.json()["id"], "flow": POINTS_FLOW, "training": training},
        ).json()
        _, stepped = poll(
            lambda: client.get(f"/v1/jobs/{job['id']}").json()["step"],
            lambda step: step >= 1,
            timeout_s=120,
            interval_s=0.5,
        )
        assert stepped, log.read_text()
        (worker,) = _children(launcher.pid)
        worker_group = os.getpgid(worker)
        assert worker_group != launcher.pid and len(_process_group(worker_group)) >= 2

        launcher.kill()
        launcher.wait(10)
        left, gone = poll(
            lambda: _process_group(worker_group), lambda members: not members, GONE_WITHIN_S, 0.2
        )
        assert gone, f"still running: {left}"

        with session_scope(database_url) as session:
            row = session.get(Job, job["id"])
            assert (row.state, row.attempts, row.worker) == ("queued", 0, None)
            assert row.enqueued_at is None  # the next worker's reaper sends it again at once
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait(10)
        if worker_group is not None and _process_group(worker_group):
            os.killpg(worker_group, signal.SIGKILL)
        get_engine(database_url).dispose()
