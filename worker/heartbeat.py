"""A thread that keeps a running job's heartbeat fresh and notices cancellation.

Every ``interval`` seconds it refreshes ``heartbeat_at`` (fenced by the attempt number) and reads
``cancel_requested``. It sets :attr:`stop` when the job is to be cancelled or when this attempt
no longer owns the job, and records which in :attr:`reason`.
"""

from __future__ import annotations

import logging
import threading

from app.db.lifecycle import heartbeat
from app.db.session import session_scope

logger = logging.getLogger(__name__)


class Heartbeat(threading.Thread):
    def __init__(self, database_url: str, job_id: str, attempt: int, interval_s: float) -> None:
        super().__init__(name=f"efnf-heartbeat-{job_id}", daemon=True)
        self._database_url = database_url
        self._job_id = job_id
        self._attempt = attempt
        self._interval_s = interval_s
        self._finished = threading.Event()
        self.stop = threading.Event()
        self.reason: str | None = None

    def run(self) -> None:
        while not self._finished.wait(self._interval_s):
            try:
                with session_scope(self._database_url) as session:
                    beat = heartbeat(session, self._job_id, self._attempt)
            except Exception:
                logger.exception("heartbeat of job %s failed; retrying", self._job_id)
                continue
            if not beat.owned:
                self.request_stop("lost")
            elif beat.cancel_requested:
                self.request_stop("cancelled")

    def request_stop(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        self.stop.set()

    def finish(self) -> None:
        self._finished.set()
        self.join(timeout=self._interval_s + 5)
