"""A running deployment under test: its settings, an in-process API client and its worker.

``Stack.client`` sends a valid API key of the tenant ``Stack.tenant`` on every request;
``client_for_tenant`` gives a client of another tenant, ``anonymous_client`` one with no key.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.core.db.api_keys import create_api_key
from app.core.db.models import SUCCEEDED, TERMINAL_JOB_STATES, JobState
from app.core.db.session import session_scope
from app.core.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
JOB_TIMEOUT_S = 150.0
WORKER_STOP_GRACE_S = 15.0


T = TypeVar("T")


def poll(
    read: Callable[[], T], done: Callable[[T], bool], timeout_s: float, interval_s: float = 0.1
) -> tuple[T, bool]:
    """Calls ``read()`` every ``interval_s`` until ``done`` holds for what it returned or
    ``timeout_s`` has passed: the last value read, and whether ``done`` held for it. The one
    polling loop of the tests (``read`` is called at least once)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = read()
        if done(value):
            return value, True
        if time.monotonic() >= deadline:
            return value, False
        time.sleep(interval_s)


def poll_job(
    client: TestClient,
    job_id: str,
    done: Callable[[dict[str, Any]], bool],
    timeout_s: float,
    interval_s: float = 0.1,
) -> tuple[dict[str, Any], bool]:
    """Reads ``GET /v1/jobs/{job_id}`` every ``interval_s`` until ``done(job)`` or ``timeout_s``:
    the last job read, and whether ``done`` held for it."""
    return poll(lambda: client.get(f"/v1/jobs/{job_id}").json(), done, timeout_s, interval_s)


def wait_for_health(
    base_url: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float = 90.0
) -> None:
    """Waits until the server ``process`` started answers ``GET /healthz`` with 200; fails the
    test with its ``log`` if it exits first or does not answer within ``timeout_s``."""

    def healthy() -> bool:
        if process.poll() is not None:
            pytest.fail(f"serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            return httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    _, answered = poll(healthy, bool, timeout_s, interval_s=0.3)
    if not answered:
        pytest.fail(f"serve did not answer within {timeout_s} s:\n{log.read_text()}")


class Worker:
    """A ``python -m worker`` subprocess in its own process group, logging to a file."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "worker"],
            cwd=REPO_ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL to the worker's whole process group: its main process and pool children."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._log.close()

    def successor(self, env: dict[str, str | None] | None = None) -> Worker:
        """A new worker with this one's environment updated by ``env`` (None removes a
        variable), logging to a new file next to this one's."""
        stem = self.log_path.stem.rsplit("+", 1)[0]
        taken = len(list(self.log_path.parent.glob(f"{stem}*.log")))
        updated = {**self.env, **(env or {})}
        kept = {key: value for key, value in updated.items() if value is not None}
        return Worker(kept, self.log_path.with_name(f"{stem}+{taken}.log"))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(WORKER_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


def embedded_env(data_dir: Path, **overrides: str) -> dict[str, str]:
    """This process's environment for an embedded service (SQLite database and broker) whose
    files live in ``data_dir``, updated by ``overrides``."""
    return {
        **os.environ,
        "EFNF_DATA_DIR": str(data_dir),
        "EFNF_DATABASE_URL": f"sqlite:///{data_dir}/efnf.sqlite3",
        "EFNF_BROKER_URL": f"sqla+sqlite:///{data_dir}/broker.sqlite3",
        **overrides,
    }


def auth_headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def create_key(database_url: str, tenant: str) -> str:
    """A new API key of ``tenant``, written straight to the database as the admin command does."""
    with session_scope(database_url) as session:
        return create_api_key(session, tenant, "test").key


@dataclass
class Stack:
    """One running deployment: its settings, an API client and its worker."""

    name: str
    settings: Settings
    client: TestClient
    worker: Worker

    @property
    def tenant(self) -> str:
        """The tenant of ``client``'s key (the settings' default owner)."""
        return self.settings.default_owner

    def client_for_tenant(self, tenant: str) -> TestClient:
        """A client of the same app sending a fresh API key of ``tenant``."""
        return TestClient(
            self.client.app, headers=auth_headers(create_key(self.settings.database_url, tenant))
        )

    def anonymous_client(self) -> TestClient:
        """A client of the same app that sends no API key."""
        return TestClient(self.client.app)

    def wait_for_job(
        self,
        job_id: str,
        states: tuple[JobState, ...] = (SUCCEEDED,),
        timeout_s: float = JOB_TIMEOUT_S,
    ) -> dict[str, Any]:
        """Polls ``GET /v1/jobs/{id}`` until the job is in one of ``states``; fails as soon as it
        ends in another."""
        job, _ = poll_job(
            self.client,
            job_id,
            lambda job: job["state"] in states or job["state"] in TERMINAL_JOB_STATES,
            timeout_s,
            interval_s=0.25,
        )
        if job.get("state") in states:
            return job
        pytest.fail(
            f"[{self.name}] job {job_id} is {job.get('state')} (error {job.get('error')!r}), "
            f"expected {states}\n--- worker log ---\n{self.worker.log_tail()}"
        )

    def replace_worker(self, env: dict[str, str | None] | None = None) -> Worker:
        """Kills the worker (SIGKILL, whole process group) and starts a fresh one (its
        environment updated by ``env``)."""
        self.worker.kill()
        self.worker = self.worker.successor(env)
        return self.worker

    def wait_until(
        self,
        job_id: str,
        condition: Callable[[dict[str, Any]], bool],
        timeout_s: float = JOB_TIMEOUT_S,
    ) -> dict[str, Any]:
        """Polls ``GET /v1/jobs/{id}`` until ``condition(job)`` holds."""
        job, met = poll_job(self.client, job_id, condition, timeout_s)
        if met:
            return job
        pytest.fail(
            f"[{self.name}] job {job_id} never met the condition; last: {job}\n"
            f"--- worker log ---\n{self.worker.log_tail()}"
        )


@contextmanager
def served_over_http(app: FastAPI, **config: Any) -> Iterator[int]:
    """``app`` served by uvicorn on a free local port, in a thread (real sockets, real HTTP);
    yields the port. ``config`` goes to ``uvicorn.Config`` (e.g. ``http=`` a protocol class)."""
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", **config))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield listener.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
        listener.close()
