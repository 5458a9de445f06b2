"""The training task: claim the job row, train with `flows`, record the outcome.

Thin by design: the database is the source of truth (state, progress, attempts, cancellation),
and the task only moves the row through its states. A re-delivered job resumes from its newest
checkpoint.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from celery import Task

from app.core.broker import TRAIN_TASK
from app.core.db import lifecycle
from app.core.db.base import utcnow
from app.core.db.blobs import npy_to_array
from app.core.db.crud import dataset_array_blob, newest_checkpoint
from app.core.db.models import CANCELLED, FAILED, SUCCEEDED, Job, JobState
from app.core.db.session import session_scope
from app.core.settings import Settings, get_settings
from flows import FlowConfig, TrainConfig, TrainingDiverged, TrainResult, build_flow, train
from worker.callbacks import JobCallbacks
from worker.celery_app import celery_app
from worker.db_retry import is_database_unavailable, retry_while_database_unavailable
from worker.heartbeat import LOST, TIMED_OUT, Heartbeat, StopReason

logger = logging.getLogger(__name__)


class JobInputError(Exception):
    """The job's inputs cannot be used (e.g. its data set was deleted)."""


@dataclass(frozen=True)
class JobInputs:
    flow_config: FlowConfig
    train_config: TrainConfig
    data: np.ndarray
    resume_from: bytes | None


@celery_app.task(name=TRAIN_TASK, bind=True)
def train_job(self: Task, job_id: str) -> str:
    """Celery entry point; returns the outcome for the worker log."""
    return run_job(get_settings(), job_id, self.request.hostname or socket.gethostname())


def run_job(settings: Settings, job_id: str, worker: str) -> str:
    """Claims and trains ``job_id``; returns the job's outcome (or why it was not run)."""
    stale_before = utcnow() - timedelta(seconds=settings.heartbeat_timeout_s)
    claim, job_id = _claim_in_turn(settings, job_id, worker, stale_before)
    if claim.outcome is not lifecycle.ClaimOutcome.CLAIMED:
        logger.info("job %s not run: %s", job_id, claim.outcome.value)
        return claim.outcome.value
    attempt = claim.attempt
    logger.info("job %s: attempt %d on %s", job_id, attempt, worker)

    heartbeat = Heartbeat(
        settings.database_url,
        job_id,
        attempt,
        settings.heartbeat_interval_s,
        settings.stall_timeout_s,
        cancel_grace_s=settings.cancel_grace_s,
        max_seconds=settings.max_job_seconds,
        max_memory_bytes=settings.max_job_memory_bytes,
    )
    heartbeat.start()
    try:
        inputs = _load_inputs(settings, job_id, attempt)
        callbacks = JobCallbacks(
            settings.database_url,
            job_id,
            attempt,
            heartbeat,
            settings.checkpoints_kept,
            patience_s=settings.heartbeat_timeout_s,
        )
        flow = build_flow(inputs.flow_config)
        heartbeat.mark_progress()
        result = train(
            flow,
            inputs.data,
            inputs.train_config,
            callbacks=callbacks,
            resume_from=inputs.resume_from,
        )
    except TrainingDiverged as error:
        return _fail(settings, job_id, attempt, f"{error}; {_kept_checkpoint(settings, job_id)}")
    except Exception as error:
        if is_database_unavailable(error):
            logger.exception("job %s: database unavailable; the reaper will re-queue it", job_id)
            raise
        logger.exception("job %s failed", job_id)
        return _fail(settings, job_id, attempt, f"{type(error).__name__}: {error}")
    finally:
        heartbeat.finish()
    error = heartbeat.timeout_message() if heartbeat.reason == TIMED_OUT else None
    return _record_result(settings, job_id, attempt, result, heartbeat.reason, error)


def _claim_in_turn(
    settings: Settings, job_id: str, worker: str, stale_before: datetime
) -> tuple[lifecycle.Claim, str]:
    """Claims the queued job whose tenant's turn it is (``lifecycle.fair_job_for``), or the
    message's own job when that one was taken by another worker first; returns the claim and
    the job it concerns."""
    with session_scope(settings.database_url) as session:
        chosen = lifecycle.fair_job_for(session, job_id, stale_before)
    for candidate in dict.fromkeys((chosen, job_id)):
        with session_scope(settings.database_url) as session:
            claim = lifecycle.claim_job(
                session, candidate, worker, stale_before, settings.max_attempts
            )
        if claim.outcome is lifecycle.ClaimOutcome.CLAIMED or candidate == job_id:
            if candidate != job_id:
                logger.info(
                    "job %s runs on the message of job %s (tenants' turns)", chosen, job_id
                )
            return claim, candidate
    raise AssertionError("unreachable: the message's own job is the last candidate")


def _load_inputs(settings: Settings, job_id: str, attempt: int) -> JobInputs:
    with session_scope(settings.database_url) as session:
        job = session.get(Job, job_id)
        if job.dataset_id is None:
            raise JobInputError("the job's data set was deleted")
        data = npy_to_array(dataset_array_blob(session, job.dataset_id))
        resume = lifecycle.newest_checkpoint_blob(session, job_id)
        lifecycle.rewind_to_step(session, job_id, attempt, 0 if resume is None else resume[0])
        if resume is not None:
            logger.info("job %s resumes from step %d", job_id, resume[0])
        return JobInputs(
            flow_config=FlowConfig.model_validate(job.flow_config),
            train_config=TrainConfig.model_validate(job.train_config),
            data=data,
            resume_from=None if resume is None else resume[1],
        )


def _kept_checkpoint(settings: Settings, job_id: str) -> str:
    """Says which checkpoint a failed job keeps as its model (the last good one)."""
    with session_scope(settings.database_url) as session:
        newest = newest_checkpoint(session, job_id)
    if newest is None:
        return "no checkpoint was written before it"
    return f"the last good checkpoint (step {newest.step}) is kept"


def _fail(settings: Settings, job_id: str, attempt: int, reason: str) -> str:
    def write() -> None:
        with session_scope(settings.database_url) as session:
            lifecycle.finish_job(session, job_id, attempt, FAILED, error=reason)

    retry_while_database_unavailable(write, settings.heartbeat_timeout_s, f"failing job {job_id}")
    return FAILED


def _record_result(
    settings: Settings,
    job_id: str,
    attempt: int,
    result: TrainResult,
    stop_reason: StopReason | None,
    error: str | None = None,
) -> str:
    """Records how the attempt ended; ``error`` (a stop for a limit) fails the job."""
    if result.stopped and stop_reason == LOST:
        logger.warning("job %s: attempt %d lost its claim; result discarded", job_id, attempt)
        return LOST
    state: JobState = CANCELLED if result.stopped else SUCCEEDED
    if result.stopped and error is not None:
        state = FAILED

    def write() -> None:
        with session_scope(settings.database_url) as session:
            # The final checkpoint itself was stored by JobCallbacks.on_checkpoint when training
            # ended (so a crash before this point resumes from it); here it is only flagged.
            if not result.stopped:
                lifecycle.mark_final_checkpoint(session, job_id, attempt, result.step)
            lifecycle.finish_job(
                session,
                job_id,
                attempt,
                state,
                step=result.step,
                metrics=result.metrics,
                error=error,
            )

    retry_while_database_unavailable(
        write, settings.heartbeat_timeout_s, f"recording the end of job {job_id}"
    )
    logger.info("job %s %s at step %d", job_id, state, result.step)
    return state
