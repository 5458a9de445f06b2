"""The Celery application shared by the API (which sends) and the worker (which consumes).

One configuration for long GPU jobs: late acks, re-delivery when a worker dies, prefetch of one,
no result back end (the job table holds state), and a Redis visibility timeout far longer than a
checkpoint interval. The embedded ``sqla+sqlite`` broker needs no server.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu import Queue

from app.db.session import ensure_sqlite_directory
from app.settings import Settings

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
            return channel.queue_declare(queue=queue, passive=False).message_count
