"""Training callbacks that write a job's metrics and checkpoints to the database."""

from __future__ import annotations

import logging

from app.db.lifecycle import record_checkpoint, record_metrics
from app.db.session import session_scope
from flows import TrainCallbacks
from worker.heartbeat import Heartbeat

logger = logging.getLogger(__name__)


class JobCallbacks(TrainCallbacks):
    """Persists progress of one attempt; a write that finds the claim lost stops training."""

    def __init__(
        self,
        database_url: str,
        job_id: str,
        attempt: int,
        heartbeat: Heartbeat,
        checkpoints_kept: int,
    ) -> None:
        self._database_url = database_url
        self._job_id = job_id
        self._attempt = attempt
        self._heartbeat = heartbeat
        self._checkpoints_kept = checkpoints_kept

    def on_metrics(self, step: int, metrics: dict[str, float]) -> None:
        try:
            with session_scope(self._database_url) as session:
                owned = record_metrics(session, self._job_id, self._attempt, step, metrics)
        except Exception:
            logger.exception("could not store metrics of job %s at step %d", self._job_id, step)
            return
        if not owned:
            self._heartbeat.request_stop("lost")

    def on_checkpoint(self, step: int, checkpoint: bytes) -> None:
        try:
            with session_scope(self._database_url) as session:
                owned = record_checkpoint(
                    session,
                    self._job_id,
                    self._attempt,
                    step,
                    checkpoint,
                    keep=self._checkpoints_kept,
                )
        except Exception:
            logger.exception("could not store checkpoint of job %s at step %d", self._job_id, step)
            return
        if not owned:
            self._heartbeat.request_stop("lost")

    def should_stop(self) -> bool:
        return self._heartbeat.stop.is_set()
