"""A thread that keeps a running job's heartbeat fresh, notices cancellation and stalls.

Every ``interval`` seconds it refreshes ``heartbeat_at`` (fenced by the attempt number), writes
the step the loop has reached, its smoothed speed and its mean loss since the last beat
(``worker.progress``), so that a job's progress, ETA and loss move between metric steps, and
reads ``cancel_requested``. It sets :attr:`stop` when the job is to be cancelled or when this
attempt no longer owns the job, and records which in :attr:`reason`.

The thread beats on its own, so a training loop that hangs (a stuck write, a dead lock, a device
that never returns) would look alive forever. The loop therefore reports progress
(:meth:`mark_progress`, once per step); after ``stall_timeout_s`` without progress the heartbeat
stops being refreshed, so the reaper sees the attempt as dead and re-queues the job. Once the
claim is gone the hung process exits: its loop cannot be interrupted from Python, and exiting
frees the worker's slot (the prefork pool replaces the child; the launcher restarts a solo worker).
"""

from __future__ import annotations

import logging
import os
import threading
import time

from app.db.lifecycle import Beat, heartbeat, read_claim
from app.db.session import session_scope
from worker.progress import StepRate, WindowMean

logger = logging.getLogger(__name__)

# Exit status of a worker process that ended itself because its training loop hung.
HUNG_EXIT_CODE = 75


class Heartbeat(threading.Thread):
    def __init__(
        self,
        database_url: str,
        job_id: str,
        attempt: int,
        interval_s: float,
        stall_timeout_s: float,
    ) -> None:
        super().__init__(name=f"efnf-heartbeat-{job_id}", daemon=True)
        self._database_url = database_url
        self._job_id = job_id
        self._attempt = attempt
        self._interval_s = interval_s
        self._stall_timeout_s = stall_timeout_s
        self._last_progress = time.monotonic()
        self._stall_reported = False
        self._rate = StepRate()
        self._loss = WindowMean()
        self._finished = threading.Event()
        self.stop = threading.Event()
        self.reason: str | None = None

    def mark_progress(self) -> None:
        """Called by the training loop: it is still moving."""
        self._last_progress = time.monotonic()

    def report_step(self, step: int, loss: float | None = None) -> None:
        """Called by the training loop after every step: progress, the step it reached and
        that step's batch loss."""
        self._last_progress = time.monotonic()
        self._rate.report(step)
        if loss is not None:
            self._loss.add(loss)

    def stalled_for_s(self) -> float:
        return time.monotonic() - self._last_progress

    def run(self) -> None:
        while not self._finished.wait(self._interval_s):
            stalled = self.stalled_for_s() > self._stall_timeout_s
            if stalled and not self._stall_reported:
                self._stall_reported = True
                logger.error(
                    "job %s: no training progress for %.1f s (EFNF_STALL_TIMEOUT_S %.1f); "
                    "heartbeat withheld so that the job is re-queued",
                    self._job_id,
                    self.stalled_for_s(),
                    self._stall_timeout_s,
                )
            try:
                beat = self._beat(refresh=not stalled)
            except Exception:
                logger.exception("heartbeat of job %s failed; retrying", self._job_id)
                continue
            if not beat.owned:
                if stalled:
                    self._exit_hung_process()
                self.request_stop("lost")
            elif beat.cancel_requested:
                self.request_stop("cancelled")

    def _beat(self, refresh: bool) -> Beat:
        with session_scope(self._database_url) as session:
            if refresh:
                step, steps_per_second = self._rate.sample()
                return heartbeat(
                    session,
                    self._job_id,
                    self._attempt,
                    step,
                    steps_per_second,
                    live_loss=self._loss.take(),
                )
            return read_claim(session, self._job_id, self._attempt)

    def _exit_hung_process(self) -> None:
        logger.error(
            "job %s: attempt %d was re-queued while its training loop hung for %.1f s; "
            "exiting process %d (status %d)",
            self._job_id,
            self._attempt,
            self.stalled_for_s(),
            os.getpid(),
            HUNG_EXIT_CODE,
        )
        os._exit(HUNG_EXIT_CODE)

    def request_stop(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        self.stop.set()

    def finish(self) -> None:
        self._finished.set()
        self.join(timeout=self._interval_s + 5)
