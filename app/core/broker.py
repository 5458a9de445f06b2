"""The Celery application shared by the API (which sends) and the worker (which consumes).

One configuration for long GPU jobs: late acks, re-delivery when a worker dies, prefetch of one,
no result back end (the job table holds state), and a Redis visibility timeout far longer than a
checkpoint interval. The embedded ``sqla+sqlite`` broker needs no server.
"""

from __future__ import annotations

import time
from threading import Lock
from typing import Any

from celery import Celery
from kombu import Queue

from app.core.db.session import ensure_sqlite_directory
from app.core.settings import Settings

TRAIN_TASK = "efnf.train"
PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5}


def transport_options(settings: Settings) -> dict[str, Any]:
    """Broker transport options; the SQL transport passes them to ``create_engine``."""
    if settings.broker_url.startswith(("redis://", "rediss://", "redis+socket://")):
        return {"visibility_timeout": settings.visibility_timeout_s}
    if settings.broker_url.startswith("sqla+sqlite"):
        return {"connect_args": {"timeout": 30}}
    return {}


def celery_config(settings: Settings) -> dict[str, Any]:
    return {
        "broker_url": settings.broker_url,
        "result_backend": settings.result_backend,
        "task_ignore_result": True,
        "broker_transport_options": transport_options(settings),
        "broker_connection_retry_on_startup": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "task_default_queue": settings.train_queue,
        "task_queues": [Queue(settings.train_queue)],
        "task_routes": {TRAIN_TASK: {"queue": settings.train_queue}},
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_publish_retry_policy": PUBLISH_RETRY_POLICY,
        "worker_send_task_events": False,
        "task_send_sent_event": False,
    }


def create_celery(settings: Settings) -> Celery:
    """A Celery app configured from ``settings``; registers no tasks."""
    if settings.broker_url.startswith("sqla+"):
        ensure_sqlite_directory(settings.broker_url.removeprefix("sqla+"))
    celery = Celery("efnf")
    celery.conf.update(celery_config(settings))
    return celery


def enqueue_training(celery: Celery, settings: Settings, job_id: str) -> None:
    """Sends the training task for ``job_id`` to the training queue."""
    celery.send_task(
        TRAIN_TASK,
        args=[job_id],
        queue=settings.train_queue,
        retry=True,
        retry_policy=PUBLISH_RETRY_POLICY,
    )


def check_broker(celery: Celery, queue: str, timeout_s: float = 3.0) -> int:
    """The number of messages waiting in ``queue``; raises if the broker is unreachable."""
    with celery.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, timeout=timeout_s)
        with connection.channel() as channel:
            try:
                return channel.queue_declare(queue=queue, passive=False).message_count
            finally:
                _close_sql_session(channel)


def _close_sql_session(channel: Any) -> None:
    # kombu's SQL transport keeps a channel's session, and the pooled connection inside its
    # open read, until the garbage collector frees the channel: fifteen quick probes emptied
    # the embedded broker's pool, and every later publish waited 30 s for a connection.
    session = getattr(channel, "_session", None)
    if session is not None:
        session.close()


class BrokerUnavailable(Exception):
    """The broker did not answer the readiness probe (the message says why)."""


class BrokerProbe:
    """``check_broker`` shared by every caller for ``max_age_s``: however many clients poll
    ``/readyz``, at most one probe talks to the broker at a time, and at most one per period.
    """

    def __init__(self, celery: Celery, queue: str, max_age_s: float = 1.0) -> None:
        self.celery = celery
        self.queue = queue
        self.max_age_s = max_age_s
        self._lock = Lock()
        self._probed_at: float | None = None
        self._answer: int | str = 0

    def __call__(self) -> int:
        """Messages waiting in the queue; raises BrokerUnavailable when the broker is down."""
        with self._lock:
            now = time.monotonic()
            if self._probed_at is None or now - self._probed_at >= self.max_age_s:
                try:
                    self._answer = check_broker(self.celery, self.queue)
                except Exception as error:
                    self._answer = f"{type(error).__name__}: {error}"
                self._probed_at = time.monotonic()
            answer = self._answer
        if isinstance(answer, str):
            raise BrokerUnavailable(answer)
        return answer
