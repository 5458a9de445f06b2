"""Finds jobs whose worker died and puts them back in the queue (or fails them).

A running job whose heartbeat is older than ``heartbeat_timeout_s`` is re-queued and its task
re-sent; once it has used ``max_attempts`` claims it is failed. A queued job whose message was
never sent is sent; one sent long ago is sent again when the queue holds fewer messages than the
queued jobs need (Redis without persistence, or the embedded broker after a hard crash, loses
them). A duplicate message is harmless because a worker must claim the job row first.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from celery import Celery

from app.core.broker import check_broker, enqueue_training
from app.core.db import lifecycle
from app.core.db.base import utcnow
from app.core.db.session import session_scope
from app.core.settings import Settings

logger = logging.getLogger(__name__)


@dataclass
class ReapReport:
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    resent: list[str] = field(default_factory=list)


def _send(settings: Settings, celery: Celery, job_id: str) -> bool:
    try:
        enqueue_training(celery, settings, job_id)
    except Exception as error:
        logger.warning("could not send job %s to the broker (%s); will retry", job_id, error)
        with session_scope(settings.database_url) as session:
            lifecycle.mark_unsent(session, job_id)
        return False
    return True


def _probably_lost(
    settings: Settings, celery: Celery, overdue: list[str], expected_messages: int
) -> list[str]:
    """The overdue queued jobs whose messages seem lost (e.g. a Redis restarted without data).

    A job waits long behind others too; re-sending all of them would pile duplicates onto a busy
    queue (each is harmless, but costs a worker a claim and a fresh child). So only as many jobs
    as the queue is short of messages are re-sent, oldest first.
    """
    if not overdue:
        return []
    try:
        waiting = check_broker(celery, settings.train_queue)
    except Exception as error:
        logger.warning("reaper: broker unavailable (%s); queued jobs re-sent later", error)
        return []
    return overdue[: max(expected_messages - waiting, 0)]


def reap_once(settings: Settings, celery: Celery) -> ReapReport:
    """One pass over the job table; safe to run concurrently in several processes."""
    report = ReapReport()
    now = utcnow()
    stale_before = now - timedelta(seconds=settings.heartbeat_timeout_s)
    with session_scope(settings.database_url) as session:
        stale = lifecycle.stale_running_jobs(session, stale_before)
    for job_id, attempts in stale:
        with session_scope(settings.database_url) as session:
            if attempts >= settings.max_attempts:
                if lifecycle.fail_exhausted(session, job_id, settings.max_attempts, stale_before):
                    report.failed.append(job_id)
                continue
            requeued = lifecycle.requeue_stale(session, job_id, stale_before)
        if requeued and _send(settings, celery, job_id):
            report.requeued.append(job_id)

    sent_before = now - timedelta(seconds=settings.requeue_queued_after_s)
    with session_scope(settings.database_url) as session:
        never_sent = lifecycle.never_sent_queued_jobs(session)
        overdue = lifecycle.overdue_queued_jobs(session, sent_before)
        queued = lifecycle.count_queued_jobs(session)
    lost = _probably_lost(settings, celery, overdue, expected_messages=queued - len(never_sent))
    for job_id in never_sent + lost:
        with session_scope(settings.database_url) as session:
            claimed = lifecycle.mark_enqueued(session, job_id, sent_before)
        if claimed and _send(settings, celery, job_id):
            report.resent.append(job_id)

    if report.requeued or report.failed or report.resent:
        logger.warning(
            "reaper: re-queued %s, failed %s, re-sent %s",
            report.requeued,
            report.failed,
            report.resent,
        )
    return report


def requeue_own_orphans(
    settings: Settings, celery: Celery, worker: str, started_at: datetime
) -> list[str]:
    """Re-queues and sends the jobs left running under this worker's name by its previous
    process (this one started at ``started_at``)."""
    with session_scope(settings.database_url) as session:
        orphans = lifecycle.requeue_jobs_of_worker(session, worker, claimed_before=started_at)
    sent = [job_id for job_id in orphans if _send(settings, celery, job_id)]
    if orphans:
        logger.warning("reaper: %s restarted; re-queued its jobs %s at once", worker, orphans)
    return sent


class ReaperThread(threading.Thread):
    """Runs :func:`reap_once` every ``reaper_interval_s`` seconds until stopped.

    With ``restarted_worker`` (a stable worker name) it first re-queues the jobs that worker's
    previous process left running, claimed before ``started_at`` (this process's start).
    """

    def __init__(
        self,
        settings: Settings,
        celery: Celery,
        restarted_worker: str | None = None,
        started_at: datetime | None = None,
    ) -> None:
        super().__init__(name="efnf-reaper", daemon=True)
        self._settings = settings
        self._celery = celery
        self._restarted_worker = restarted_worker
        self._started_at = started_at or utcnow()
        self._stopped = threading.Event()

    def run(self) -> None:
        if self._restarted_worker is not None:
            try:
                requeue_own_orphans(
                    self._settings, self._celery, self._restarted_worker, self._started_at
                )
            except Exception:
                logger.exception("could not re-queue the jobs of %s", self._restarted_worker)
        while not self._stopped.is_set():
            try:
                reap_once(self._settings, self._celery)
            except Exception:
                logger.exception(
                    "reaper pass failed; retrying in %.0f s", self._settings.reaper_interval_s
                )
            self._stopped.wait(self._settings.reaper_interval_s)

    def stop(self) -> None:
        self._stopped.set()
