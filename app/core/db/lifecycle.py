"""The job state machine as seen by workers and the reaper.

The job row is the only truth. A worker *claims* a job with one conditional UPDATE that bumps
``attempts``; that attempt number is its fencing token, and every later write (heartbeat,
metrics, checkpoints, the final state) is conditional on it, so a worker that lost its claim
(stale heartbeat, re-delivered message) can no longer change the job.

States: queued -> running -> succeeded | failed | cancelled; running -> queued (reaper).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from sqlalchemy import Table, case, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.core.db.base import new_id, utcnow
from app.core.db.blobs import clean_metrics
from app.core.db.models import (
    ACTIVE_JOB_STATES,
    CANCELLED,
    FAILED,
    QUEUED,
    RUNNING,
    TERMINAL_JOB_STATES,
    Checkpoint,
    Job,
    JobState,
    Metric,
)


class ClaimOutcome(Enum):
    CLAIMED = "claimed"
    MISSING = "missing"
    FINISHED = "finished"
    BUSY = "busy"
    EXHAUSTED = "exhausted"


@dataclass(frozen=True)
class Claim:
    outcome: ClaimOutcome
    attempt: int = 0


@dataclass(frozen=True)
class Beat:
    owned: bool
    cancel_requested: bool


def insert_ignoring_duplicates(
    session: Session, table: Table, values: dict[str, Any], keys: list[str]
) -> bool:
    """Inserts a row unless one with the same ``keys`` exists; True when it inserted."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(table).values(**values).on_conflict_do_nothing(index_elements=keys)
    return session.execute(statement).rowcount == 1


def _owned(job_id: str, attempt: int) -> Any:
    """The condition that ``attempt`` still owns the job."""
    return (Job.id == job_id) & (Job.attempts == attempt) & (Job.state == RUNNING)


def _advanced_to(step: int) -> Any:
    """``step`` unless the row is already further: a heartbeat and a metric write race."""
    return case((Job.step < step, step), else_=Job.step)


def _stale(stale_before: datetime) -> Any:
    """Running, but no heartbeat since ``stale_before``: its worker is presumed dead."""
    return (Job.state == RUNNING) & or_(
        Job.heartbeat_at.is_(None), Job.heartbeat_at < stale_before
    )


def fair_job_for(session: Session, job_id: str, stale_before: datetime) -> str:
    """The job a worker should claim for a message about ``job_id``: round-robin between
    tenants, so that one tenant's queue of jobs cannot starve another's.

    A message only wakes a worker; every queued job has one, so running another queued job for
    it keeps one message per queued job. Among the tenants with queued jobs (not cancelled), the
    one with the fewest running jobs goes first, then the one whose last attempt started
    longest ago (never first); its oldest queued job is chosen. A running job with a stale
    heartbeat is re-claimed as before, and with nothing queued the message's job is returned.
    """
    if session.scalar(select(Job.id).where(Job.id == job_id, _stale(stale_before))) is not None:
        return job_id
    queued = session.execute(
        select(Job.id, Job.owner)
        .where(Job.state == QUEUED, ~Job.cancel_requested)
        .order_by(Job.created_at, Job.id)
    ).all()
    if not queued:
        return job_id
    owners = {row.owner for row in queued}
    running = dict(
        session.execute(
            select(Job.owner, func.count())
            .where(Job.state == RUNNING, Job.owner.in_(owners))
            .group_by(Job.owner)
        ).all()
    )
    last_start = dict(
        session.execute(
            select(Job.owner, func.max(Job.attempt_started_at))
            .where(Job.owner.in_(owners))
            .group_by(Job.owner)
        ).all()
    )
    never = datetime.min.replace(tzinfo=UTC)

    def turn(owner: str) -> tuple[int, datetime]:
        started = last_start.get(owner)
        return running.get(owner, 0), never if started is None else _aware(started)

    chosen = min(owners, key=lambda owner: (turn(owner), owner))
    return next(row.id for row in queued if row.owner == chosen)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def claim_job(
    session: Session, job_id: str, worker: str, stale_before: datetime, max_attempts: int
) -> Claim:
    """Moves a queued job (or a running one whose heartbeat is stale) to running.

    A job whose attempts are used up is failed instead; a cancelled queued job is left alone.
    """
    now = utcnow()
    claimable = or_(Job.state == QUEUED, _stale(stale_before))
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, claimable, Job.attempts < max_attempts, ~Job.cancel_requested)
        .values(
            state=RUNNING,
            attempts=Job.attempts + 1,
            worker=worker,
            heartbeat_at=now,
            attempt_started_at=now,
            steps_per_second=None,
            live_loss=None,
            updated_at=now,
        )
        .returning(Job.attempts)
    ).first()
    if result is not None:
        session.execute(
            update(Job).where(Job.id == job_id, Job.started_at.is_(None)).values(started_at=now)
        )
        return Claim(ClaimOutcome.CLAIMED, result.attempts)
    job = session.get(Job, job_id, populate_existing=True)
    if job is None:
        return Claim(ClaimOutcome.MISSING)
    if job.state in TERMINAL_JOB_STATES:
        return Claim(ClaimOutcome.FINISHED)
    if job.cancel_requested:
        finish_cancelled_unowned(session, job_id)
        return Claim(ClaimOutcome.FINISHED)
    if job.attempts >= max_attempts and (
        job.state == QUEUED or job.heartbeat_at is None or job.heartbeat_at < stale_before
    ):
        fail_exhausted(session, job_id, max_attempts, stale_before)
        return Claim(ClaimOutcome.EXHAUSTED)
    return Claim(ClaimOutcome.BUSY)


def finish_cancelled_unowned(session: Session, job_id: str) -> None:
    """Marks a job whose cancellation was requested, and that no live worker owns, cancelled."""
    now = utcnow()
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state.in_(ACTIVE_JOB_STATES), Job.cancel_requested)
        .values(state=CANCELLED, finished_at=now, updated_at=now)
    )


def fail_exhausted(
    session: Session, job_id: str, max_attempts: int, stale_before: datetime
) -> bool:
    """Fails a queued job, or a running one with a stale heartbeat, that used its attempts."""
    now = utcnow()
    unowned = or_(Job.state == QUEUED, _stale(stale_before))
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, unowned, Job.attempts >= max_attempts)
        .values(
            state=FAILED,
            finished_at=now,
            updated_at=now,
            error=f"gave up after {max_attempts} attempt(s): the worker stopped sending "
            "heartbeats (crashed, killed, lost, or its training loop hung)",
        )
    )
    return result.rowcount == 1


def rewind_to_step(session: Session, job_id: str, attempt: int, step: int) -> bool:
    """Starts ``attempt`` at ``step`` (its checkpoint's, or 0); False if not owned.

    An earlier attempt may have written metrics after its newest checkpoint before it died; they
    are deleted so that the resumed run writes each later step exactly once.
    """
    latest = session.scalar(
        select(Metric.values)
        .where(Metric.job_id == job_id, Metric.step <= step)
        .order_by(Metric.step.desc())
        .limit(1)
    )
    owned = session.execute(
        update(Job)
        .where(_owned(job_id, attempt))
        .values(attempt_start_step=step, step=step, latest_metrics=latest)
    ).rowcount
    if not owned:
        return False
    session.execute(delete(Metric).where(Metric.job_id == job_id, Metric.step > step))
    return True


def heartbeat(
    session: Session,
    job_id: str,
    attempt: int,
    step: int | None = None,
    steps_per_second: float | None = None,
    live_loss: float | None = None,
) -> Beat:
    """Refreshes the heartbeat of an owned job and reads its cancellation flag.

    With ``step`` (the loop's newest), ``steps_per_second`` (its smoothed speed) and
    ``live_loss`` (its mean loss since the last beat) it also records progress, so that the
    step, the ETA and the loss move between metric steps.
    """
    values: dict[str, Any] = {"heartbeat_at": utcnow()}
    if step is not None:
        values["step"] = _advanced_to(step)
    if steps_per_second is not None:
        values["steps_per_second"] = steps_per_second
    if live_loss is not None and math.isfinite(live_loss):
        values["live_loss"] = live_loss
    row = session.execute(
        update(Job).where(_owned(job_id, attempt)).values(**values).returning(Job.cancel_requested)
    ).first()
    return _beat_of(row)


def read_claim(session: Session, job_id: str, attempt: int) -> Beat:
    """Whether ``attempt`` still owns the job, without refreshing its heartbeat."""
    row = session.execute(select(Job.cancel_requested).where(_owned(job_id, attempt))).first()
    return _beat_of(row)


def _beat_of(row: Any) -> Beat:
    if row is None:
        return Beat(owned=False, cancel_requested=False)
    return Beat(owned=True, cancel_requested=bool(row.cancel_requested))


def record_metrics(
    session: Session, job_id: str, attempt: int, step: int, metrics: dict[str, Any]
) -> Beat:
    """Stores one step's metrics once (a duplicate step is ignored).

    Also reads the cancellation flag, so that a cancel stops the run at its next metric step
    even when steps are faster than heartbeats.
    """
    values = clean_metrics(metrics)
    row = session.execute(
        update(Job)
        .where(_owned(job_id, attempt))
        .values(step=_advanced_to(step), latest_metrics=values, heartbeat_at=utcnow())
        .returning(Job.cancel_requested)
    ).first()
    if row is None:
        return Beat(owned=False, cancel_requested=False)
    insert_ignoring_duplicates(
        session,
        Metric.__table__,
        {"job_id": job_id, "step": step, "values": values, "created_at": utcnow()},
        ["job_id", "step"],
    )
    return _beat_of(row)


def record_checkpoint(
    session: Session,
    job_id: str,
    attempt: int,
    step: int,
    blob: bytes,
    keep: int,
) -> bool:
    """Stores a checkpoint once per step and prunes all but the newest ``keep``."""
    owner = session.scalar(select(Job.owner).where(_owned(job_id, attempt)))
    if owner is None:
        return False
    insert_ignoring_duplicates(
        session,
        Checkpoint.__table__,
        {
            "id": new_id("ckpt"),
            "owner": owner,
            "job_id": job_id,
            "step": step,
            "final": False,
            "size_bytes": len(blob),
            "sha256": hashlib.sha256(blob).hexdigest(),
            "blob": blob,
            "created_at": utcnow(),
        },
        ["job_id", "step"],
    )
    kept = (
        select(Checkpoint.id)
        .where(Checkpoint.job_id == job_id)
        .order_by(Checkpoint.step.desc())
        .limit(keep)
    )
    session.execute(
        delete(Checkpoint).where(Checkpoint.job_id == job_id, Checkpoint.id.not_in(kept))
    )
    return True


def mark_final_checkpoint(session: Session, job_id: str, attempt: int, step: int) -> bool:
    """Marks the stored checkpoint of ``step`` as the finished job's model.

    The run's last checkpoint is stored by its ``on_checkpoint`` as soon as training ends, so a
    worker that dies before recording the outcome resumes from it; this only flags it, in the
    transaction that finishes the job. False if the claim was lost or no checkpoint has ``step``.
    """
    if session.scalar(select(Job.id).where(_owned(job_id, attempt))) is None:
        return False
    result = session.execute(
        update(Checkpoint)
        .where(Checkpoint.job_id == job_id, Checkpoint.step == step)
        .values(final=True)
    )
    return result.rowcount == 1


def newest_checkpoint_blob(session: Session, job_id: str) -> tuple[int, bytes] | None:
    row = session.execute(
        select(Checkpoint.step, Checkpoint.blob)
        .where(Checkpoint.job_id == job_id)
        .order_by(Checkpoint.step.desc())
        .limit(1)
    ).first()
    return None if row is None else (row.step, row.blob)


def finish_job(
    session: Session,
    job_id: str,
    attempt: int,
    state: JobState,
    step: int | None = None,
    metrics: dict[str, Any] | None = None,
    error: str | None = None,
) -> bool:
    """Moves an owned running job to a terminal state; False if the claim was lost."""
    now = utcnow()
    values: dict[str, Any] = {"state": state, "finished_at": now, "updated_at": now}
    if step is not None:
        values["step"] = step
    if metrics is not None:
        values["latest_metrics"] = clean_metrics(metrics)
    if error is not None:
        values["error"] = error
    result = session.execute(update(Job).where(_owned(job_id, attempt)).values(**values))
    return result.rowcount == 1


def requeue_jobs_of_worker(session: Session, worker: str, claimed_before: datetime) -> list[str]:
    """Puts back in the queue the jobs running under ``worker`` since before ``claimed_before``.

    For a worker that has just started (at ``claimed_before``) under a stable name: what ran
    under that name before died with its previous process, so there is no need to wait for the
    heartbeat to go stale. Jobs it has claimed itself since are left alone.
    """
    now = utcnow()
    rows = session.execute(
        update(Job)
        .where(
            Job.state == RUNNING,
            Job.worker == worker,
            Job.attempt_started_at < claimed_before,
        )
        .values(state=QUEUED, enqueued_at=now, updated_at=now, worker=None)
        .returning(Job.id)
    )
    return [row.id for row in rows]


def release_jobs_of_worker(session: Session, worker: str) -> list[str]:
    """Puts back in the queue, unsent and with the attempt refunded, the jobs running under
    ``worker``: for a worker that stops because its launcher died, not because of the job.

    Unsent (``enqueued_at`` cleared) so that the reaper sends each one again at once.
    """
    now = utcnow()
    rows = session.execute(
        update(Job)
        .where(Job.state == RUNNING, Job.worker == worker)
        .values(
            state=QUEUED,
            attempts=Job.attempts - 1,
            enqueued_at=None,
            updated_at=now,
            worker=None,
        )
        .returning(Job.id)
    )
    return [row.id for row in rows]


def stale_running_jobs(session: Session, stale_before: datetime) -> list[tuple[str, int]]:
    """(id, attempts) of running jobs whose heartbeat is older than ``stale_before``."""
    rows = session.execute(select(Job.id, Job.attempts).where(_stale(stale_before)))
    return [(row.id, row.attempts) for row in rows]


def requeue_stale(session: Session, job_id: str, stale_before: datetime) -> bool:
    """Puts a running job with a stale heartbeat back in the queue."""
    now = utcnow()
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, _stale(stale_before))
        .values(state=QUEUED, enqueued_at=now, updated_at=now, worker=None)
    )
    return result.rowcount == 1


def never_sent_queued_jobs(session: Session) -> list[str]:
    """Queued jobs whose message was never sent (the broker was down when they were queued)."""
    rows = session.scalars(select(Job.id).where(Job.state == QUEUED, Job.enqueued_at.is_(None)))
    return list(rows)


def overdue_queued_jobs(session: Session, sent_before: datetime) -> list[str]:
    """Queued jobs last sent before ``sent_before``, oldest first (their message may be lost)."""
    rows = session.scalars(
        select(Job.id)
        .where(Job.state == QUEUED, Job.enqueued_at < sent_before)
        .order_by(Job.enqueued_at)
    )
    return list(rows)


def count_queued_jobs(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Job).where(Job.state == QUEUED))


def mark_enqueued(session: Session, job_id: str, sent_before: datetime | None = None) -> bool:
    """Records that the job's message is sent now; with ``sent_before``, only if not sent since."""
    condition = [Job.id == job_id, Job.state == QUEUED]
    if sent_before is not None:
        condition.append(or_(Job.enqueued_at.is_(None), Job.enqueued_at < sent_before))
    now = utcnow()
    return (
        session.execute(
            update(Job).where(*condition).values(enqueued_at=now, updated_at=now)
        ).rowcount
        == 1
    )


def mark_unsent(session: Session, job_id: str) -> None:
    session.execute(
        update(Job).where(Job.id == job_id, Job.state == QUEUED).values(enqueued_at=None)
    )
