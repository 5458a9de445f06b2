"""The worker's Celery app: the shared configuration plus the tasks and process hooks.

Start it with ``python -m worker`` (see ``worker/__main__.py``), which picks the pool from
the settings. The reaper runs in a thread of the worker's main process.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import worker_process_init, worker_ready, worker_shutdown

from app.core.broker import create_celery
from app.core.db.base import utcnow
from app.core.db.session import forget_inherited_engines
from app.core.settings import get_settings
from worker.reaper import ReaperThread

logger = logging.getLogger(__name__)

settings = get_settings()
celery_app = create_celery(settings)
celery_app.conf.update(
    include=["worker.tasks"],
    worker_enable_remote_control=not settings.broker_url.startswith("sqla+"),
)

_reaper: ReaperThread | None = None
# Before any job is consumed: jobs claimed under this worker's name earlier are a dead process's.
_process_started_at = utcnow()


@worker_process_init.connect
def _child_started(**_: Any) -> None:
    forget_inherited_engines()


@worker_ready.connect
def _start_reaper(sender: Any = None, **_: Any) -> None:
    global _reaper
    # A stable name means that a job still running under it belongs to a previous process.
    restarted = sender.hostname if settings.worker_name and sender is not None else None
    _reaper = ReaperThread(
        settings, celery_app, restarted_worker=restarted, started_at=_process_started_at
    )
    _reaper.start()


@worker_shutdown.connect
def _stop_reaper(**_: Any) -> None:
    if _reaper is not None:
        _reaper.stop()
