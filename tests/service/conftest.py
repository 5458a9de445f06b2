"""Real services for the service tests: a fresh PostgreSQL database, Redis, Celery workers.

Two stacks run the same tests (the ``stack`` fixture is parametrised):

- ``postgres``: a database ``efnf_test_<random>`` created for the session and dropped after it,
  Redis (a dedicated DB number, a queue name unique to the session) and a ``python -m worker``
  subprocess consuming that queue;
- ``embedded``: the embedded default, a SQLite database and the ``sqla+sqlite`` broker in a
  temporary directory, with its own worker subprocess.

A third, ``private_stack``, runs on a PostgreSQL cluster and a Redis of the session's own
(``tests/service/private_servers.py``), for fault tests that kill workers or restart servers;
``stack_on_urls`` builds a stack on any given URLs.

The API runs in-process (`fastapi.testclient.TestClient`); the worker is a separate process, so a
job really crosses the broker. ``stack.client`` carries an API key of ``stack.tenant``; the
``other_tenant_client`` and ``anonymous_client`` fixtures give a second tenant's client and one
without a key. Environment: ``EFNF_TEST_POSTGRES_URL`` (an admin connection,
default ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``) and ``EFNF_TEST_REDIS_URL``
(default ``redis://127.0.0.1:6379/13``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from app.core.db.migrate import upgrade_to_head
from app.core.db.session import dispose_engines
from app.core.settings import Settings
from app.main import create_app
from tests.service.payloads import (
    IMAGE_FLOW,
    POINTS_FLOW,
    TINY_TRAINING,
    Trained,
    digits_images,
    png_zip,
    submit_job,
)
from tests.service.private_servers import PrivatePostgres, PrivateRedis
from tests.service.stack import REPO_ROOT, Stack, Worker, auth_headers, create_key

POSTGRES_ADMIN_URL = os.environ.get(
    "EFNF_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("EFNF_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")

# Fast heartbeats and reaper passes so that fault paths finish within a test.
SERVICE_ENV = {
    "EFNF_HEARTBEAT_INTERVAL_S": "0.5",
    "EFNF_HEARTBEAT_TIMEOUT_S": "4",
    "EFNF_REAPER_INTERVAL_S": "1",
    "EFNF_REQUEUE_QUEUED_AFTER_S": "300",
    "EFNF_MAX_ATTEMPTS": "3",
    "EFNF_MAX_STEPS": "200000",
    "EFNF_WORKER_LOGLEVEL": "INFO",
}


def _libpq_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def create_postgres_database(name: str) -> str:
    """Creates database ``name`` next to the admin database; returns its SQLAlchemy URL."""
    with psycopg.connect(_libpq_url(POSTGRES_ADMIN_URL), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def drop_postgres_database(name: str) -> None:
    with psycopg.connect(_libpq_url(POSTGRES_ADMIN_URL), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this session (dropped at the end)."""
    name = f"efnf_test_{uuid.uuid4().hex[:12]}"
    try:
        url = create_postgres_database(name)
    except psycopg.OperationalError as error:
        pytest.fail(f"PostgreSQL at {POSTGRES_ADMIN_URL} is required: {error}")
    try:
        yield url
    finally:
        dispose_engines()
        drop_postgres_database(name)


@pytest.fixture(scope="session")
def redis_broker() -> Iterator[tuple[str, str]]:
    """(broker URL, queue name unique to this session); the queue's keys are removed after."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as error:
        pytest.fail(f"Redis at {REDIS_URL} is required: {error}")
    queue = f"train_test_{uuid.uuid4().hex[:12]}"
    try:
        yield REDIS_URL, queue
    finally:
        for key in client.scan_iter(match=f"*{queue}*"):
            client.delete(key)
        client.close()


def _start_stack(
    name: str, settings: Settings, tmp: Path, extra_env: dict[str, str] | None = None
) -> Iterator[Stack]:
    upgrade_to_head(settings.database_url)
    env = {
        **os.environ,
        **SERVICE_ENV,
        **(extra_env or {}),
        "EFNF_DATABASE_URL": settings.database_url,
        "EFNF_BROKER_URL": settings.broker_url,
        "EFNF_TRAIN_QUEUE": settings.train_queue,
        "PYTHONPATH": str(REPO_ROOT),
    }
    key = create_key(settings.database_url, settings.default_owner)
    worker = Worker(env, tmp / f"worker-{name}.log")
    stack: Stack | None = None
    try:
        with TestClient(create_app(settings), headers=auth_headers(key)) as client:
            stack = Stack(name, settings, client, worker)
            yield stack
    finally:
        # A fault test may have replaced the worker: stop the stack's current one.
        (worker if stack is None else stack.worker).stop()
        dispose_engines()


def _service_settings(extra_env: dict[str, str] | None = None, **values: Any) -> Settings:
    environment = {**SERVICE_ENV, **(extra_env or {})}
    return Settings(
        **{key.removeprefix("EFNF_").lower(): v for key, v in environment.items()}, **values
    )


@pytest.fixture(scope="session", params=["postgres", "embedded"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """The API and a worker on PostgreSQL + Redis, then on the embedded default."""
    tmp = tmp_path_factory.mktemp(request.param)
    if request.param == "postgres":
        database_url = request.getfixturevalue("postgres_database")
        broker_url, queue = request.getfixturevalue("redis_broker")
        settings = _service_settings(
            database_url=database_url, broker_url=broker_url, train_queue=queue
        )
    else:
        settings = _service_settings(
            database_url=f"sqlite:///{tmp}/efnf.sqlite3",
            broker_url=f"sqla+sqlite:///{tmp}/broker.sqlite3",
            train_queue="train",
        )
    yield from _start_stack(request.param, settings, tmp)


@pytest.fixture(scope="session")
def trained(stack: Stack) -> Trained:
    response = stack.client.post(
        "/v1/datasets/builtin", json={"name": "eight_gaussians", "n": 512, "seed": 1}
    )
    assert response.status_code == 201, response.text
    points = response.json()
    response = stack.client.post(
        "/v1/datasets",
        files={"file": ("digits.zip", png_zip(digits_images(96)), "application/zip")},
        data={"name": "digits-png"},
    )
    assert response.status_code == 201, response.text
    images = response.json()
    points_job = submit_job(stack.client, points["id"], POINTS_FLOW, TINY_TRAINING)
    image_job = submit_job(
        stack.client, images["id"], IMAGE_FLOW, {**TINY_TRAINING, "batch_size": 16}
    )
    assert points_job["state"] == "queued" and image_job["state"] == "queued"
    return Trained(
        points_dataset=points,
        image_dataset=images,
        points_job=stack.wait_for_job(points_job["id"]),
        image_job=stack.wait_for_job(image_job["id"]),
    )


@pytest.fixture(scope="session")
def other_tenant_client(stack: Stack) -> TestClient:
    """A client of a second tenant, ``other-tenant``, on the same stack."""
    return stack.client_for_tenant("other-tenant")


@pytest.fixture(scope="session")
def anonymous_client(stack: Stack) -> TestClient:
    """A client of the same stack that sends no API key."""
    return stack.anonymous_client()


@contextmanager
def stack_on_urls(
    name: str,
    database_url: str,
    broker_url: str,
    tmp: Path,
    queue: str = "train",
    env: dict[str, str] | None = None,
) -> Iterator[Stack]:
    """A stack (in-process API + worker subprocess) on the given database and broker URLs.

    ``env`` adds to SERVICE_ENV, for both the API's settings and the worker.
    """
    settings = _service_settings(
        env, database_url=database_url, broker_url=broker_url, train_queue=queue
    )
    yield from _start_stack(name, settings, tmp, env)


# The fault tests' settings on top of SERVICE_ENV: a short stall timeout (a hung loop is caught
# in seconds) and quick re-sending of queued jobs (a Redis restart loses their messages).
FAULT_ENV = {"EFNF_STALL_TIMEOUT_S": "8", "EFNF_REQUEUE_QUEUED_AFTER_S": "5"}


@dataclass
class PrivateServers:
    postgres: PrivatePostgres
    redis: PrivateRedis
    database_url: str


@pytest.fixture(scope="session")
def private_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateServers]:
    """A PostgreSQL cluster and a Redis of this session alone, for tests that restart them."""
    postgres = PrivatePostgres()
    try:
        redis_server = PrivateRedis(tmp_path_factory.mktemp("private-redis"))
        try:
            yield PrivateServers(postgres, redis_server, postgres.create_database("efnf"))
        finally:
            redis_server.stop()
    finally:
        dispose_engines()
        postgres.destroy()


@pytest.fixture(scope="session")
def private_stack(
    private_servers: PrivateServers, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """A stack on the private servers, with FAULT_ENV; tests may kill and replace its worker.

    Stopped before the servers are (a worker cut off from its database would linger).
    """
    with stack_on_urls(
        "private",
        private_servers.database_url,
        private_servers.redis.url,
        tmp_path_factory.mktemp("private"),
        env=FAULT_ENV,
    ) as stack:
        yield stack
