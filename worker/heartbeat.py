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

One training step of a large residual flow can take minutes, and the loop only looks at
:attr:`stop` between steps. So the thread also ends the attempt itself, from outside the loop:

- a cancellation the loop has not acted on within ``cancel_grace_s`` is recorded (the job is
  cancelled, its newest checkpoint kept as its model) and the process exits;
- an attempt running longer than ``max_seconds`` (EFNF_MAX_JOB_SECONDS) is asked to stop, then
  failed the same way after the grace;
- a process whose resident memory passes ``max_memory_bytes`` (EFNF_MAX_JOB_MEMORY_BYTES) fails
  the job at once and exits, before the machine runs out of memory.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Literal, get_args

from app.core.db.lifecycle import Beat, finish_job, heartbeat, read_claim
from app.core.db.models import CANCELLED, FAILED, JobState
from app.core.db.session import session_scope
from worker.progress import StepRate, WindowMean

logger = logging.getLogger(__name__)

# Exit status of a worker process that ended itself because its training loop hung.
HUNG_EXIT_CODE = 75
# Exit status of a worker process that ended its attempt from outside the training loop.
ENDED_EXIT_CODE = 76
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")

# Why an attempt stops early: it lost its claim, the job was cancelled, or it ran too long.
StopReason = Literal["lost", "cancel requested", "timed out"]
LOST, CANCEL_REQUESTED, TIMED_OUT = get_args(StopReason)


def resident_bytes() -> int:
    """Resident memory of this process (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_BYTES


class Heartbeat(threading.Thread):
    def __init__(
        self,
        database_url: str,
        job_id: str,
        attempt: int,
        interval_s: float,
        stall_timeout_s: float,
        cancel_grace_s: float = 5.0,
        max_seconds: float | None = None,
        max_memory_bytes: int | None = None,
    ) -> None:
        super().__init__(name=f"efnf-heartbeat-{job_id}", daemon=True)
        self._cancel_grace_s = cancel_grace_s
        self._max_seconds = max_seconds
        self._max_memory_bytes = max_memory_bytes
        self._attempt_began = time.monotonic()
        self._stop_requested_at: float | None = None
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
        self.reason: StopReason | None = None

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
            self._enforce_caps()
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
                self.request_stop(LOST)
            elif beat.cancel_requested:
                self.request_stop(CANCEL_REQUESTED)

    def _enforce_caps(self) -> None:
        if self._max_memory_bytes is not None:
            resident = resident_bytes()
            if resident > self._max_memory_bytes:
                self._end_attempt(
                    FAILED,
                    f"the training process used {resident} bytes of memory, above this "
                    f"service's limit {self._max_memory_bytes} (EFNF_MAX_JOB_MEMORY_BYTES); "
                    "use a smaller batch_size, width or depth",
                )
        elapsed = time.monotonic() - self._attempt_began
        if self._max_seconds is not None and elapsed > self._max_seconds:
            self.request_stop(TIMED_OUT)
        if self._stop_requested_at is None or self._finished.is_set():
            return
        if time.monotonic() - self._stop_requested_at < self._cancel_grace_s:
            return
        if self.reason == CANCEL_REQUESTED:
            self._end_attempt(CANCELLED, None)
        elif self.reason == TIMED_OUT:
            self._end_attempt(FAILED, self.timeout_message())

    def timeout_message(self) -> str:
        return (
            f"the attempt ran longer than this service's limit {self._max_seconds:.0f} s "
            "(EFNF_MAX_JOB_SECONDS); the newest checkpoint is kept"
        )

    def _end_attempt(self, state: JobState, error: str | None) -> None:
        """Records ``state`` for the job (fenced by the attempt) and exits this process: the
        training loop is inside a step that cannot be interrupted from Python."""
        logger.error(
            "job %s: attempt %d ended from outside the training loop: %s%s; exiting process %d",
            self._job_id,
            self._attempt,
            state,
            f" ({error})" if error else "",
            os.getpid(),
        )
        try:
            with session_scope(self._database_url) as session:
                finish_job(session, self._job_id, self._attempt, state, error=error)
        except Exception:
            logger.exception("job %s: could not record %s; the reaper will", self._job_id, state)
        os._exit(ENDED_EXIT_CODE)

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

    def request_stop(self, reason: StopReason) -> None:
        if self.reason is None:
            self.reason = reason
            self._stop_requested_at = time.monotonic()
        self.stop.set()

    def finish(self) -> None:
        self._finished.set()
        self.join(timeout=self._interval_s + 5)
