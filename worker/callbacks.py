"""Training callbacks that write a job's metrics and checkpoints to the database."""

from __future__ import annotations

from app.core.db.lifecycle import record_checkpoint, record_metrics
from app.core.db.session import session_scope
from flows import TrainCallbacks
from worker.db_retry import retry_while_database_unavailable
from worker.heartbeat import CANCEL_REQUESTED, LOST, Heartbeat


class JobCallbacks(TrainCallbacks):
    """Persists progress of one attempt; a write that finds the claim lost stops training.

    Writes ride out a database outage of up to ``patience_s`` (see ``worker.db_retry``); a
    longer one raises and ends the attempt, to be resumed from its newest checkpoint.
    """

    def __init__(
        self,
        database_url: str,
        job_id: str,
        attempt: int,
        heartbeat: Heartbeat,
        checkpoints_kept: int,
        patience_s: float,
    ) -> None:
        self._database_url = database_url
        self._job_id = job_id
        self._attempt = attempt
        self._heartbeat = heartbeat
        self._checkpoints_kept = checkpoints_kept
        self._patience_s = patience_s

    def on_metrics(self, step: int, metrics: dict[str, float]) -> None:
        def write() -> None:
            with session_scope(self._database_url) as session:
                beat = record_metrics(session, self._job_id, self._attempt, step, metrics)
            if not beat.owned:
                self._heartbeat.request_stop(LOST)
            elif beat.cancel_requested:
                self._heartbeat.request_stop(CANCEL_REQUESTED)

        retry_while_database_unavailable(
            write, self._patience_s, f"metrics of job {self._job_id} at step {step}"
        )

    def on_checkpoint(self, step: int, checkpoint: bytes) -> None:
        def write() -> bool:
            with session_scope(self._database_url) as session:
                return record_checkpoint(
                    session,
                    self._job_id,
                    self._attempt,
                    step,
                    checkpoint,
                    keep=self._checkpoints_kept,
                )

        owned = retry_while_database_unavailable(
            write, self._patience_s, f"checkpoint of job {self._job_id} at step {step}"
        )
        if not owned:
            self._heartbeat.request_stop(LOST)

    def on_step(self, step: int, loss: float) -> None:
        self._heartbeat.report_step(step, loss)

    def should_stop(self) -> bool:
        self._heartbeat.mark_progress()
        return self._heartbeat.stop.is_set()
