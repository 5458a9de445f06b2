"""Queries of the API: every read and write is scoped to an owner (tenant)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from app.core.db.base import new_id, utcnow
from app.core.db.models import (
    ACTIVE_JOB_STATES,
    CANCELLED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    TERMINAL_JOB_STATES,
    Checkpoint,
    Dataset,
    Job,
    Metric,
)


class ConflictError(Exception):
    """The request conflicts with the current state of a row (HTTP 409)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def create_dataset(
    session: Session,
    *,
    owner: str,
    name: str,
    kind: str,
    shape: Sequence[int],
    count: int,
    dtype: str,
    checksum: str,
    source: str,
    source_params: dict[str, Any],
    array_blob: bytes,
) -> Dataset:
    dataset = Dataset(
        id=new_id("ds"),
        owner=owner,
        name=name,
        kind=kind,
        shape=list(shape),
        count=count,
        dtype=dtype,
        checksum=checksum,
        source=source,
        source_params=source_params,
        size_bytes=len(array_blob),
        array=array_blob,
    )
    session.add(dataset)
    session.flush()
    return dataset


def list_datasets(session: Session, owner: str, limit: int, offset: int) -> list[Dataset]:
    query = (
        select(Dataset)
        .where(Dataset.owner == owner)
        .order_by(Dataset.created_at.desc(), Dataset.id)
        .limit(limit)
        .offset(offset)
    )
    return list(session.scalars(query))


def count_datasets(session: Session, owner: str) -> int:
    return session.scalar(select(func.count()).select_from(Dataset).where(Dataset.owner == owner))


def get_dataset(session: Session, owner: str, dataset_id: str) -> Dataset | None:
    return session.scalar(select(Dataset).where(Dataset.id == dataset_id, Dataset.owner == owner))


def dataset_array_blob(session: Session, dataset_id: str) -> bytes:
    return session.scalar(select(Dataset.array).where(Dataset.id == dataset_id))


def tenant_storage_bytes(session: Session, owner: str) -> int:
    """Bytes stored for ``owner``: data set arrays and checkpoints."""
    datasets = session.scalar(
        select(func.coalesce(func.sum(Dataset.size_bytes), 0)).where(Dataset.owner == owner)
    )
    checkpoints = session.scalar(
        select(func.coalesce(func.sum(Checkpoint.size_bytes), 0)).where(Checkpoint.owner == owner)
    )
    return int(datasets) + int(checkpoints)


def count_active_jobs(session: Session, dataset_id: str) -> int:
    return session.scalar(
        select(func.count())
        .select_from(Job)
        .where(Job.dataset_id == dataset_id, Job.state.in_(ACTIVE_JOB_STATES))
    )


def lock_dataset(session: Session, owner: str, dataset_id: str) -> bool:
    """Takes the write lock on a data set's row for the rest of the transaction; False when the
    tenant has no such data set (or it was deleted while this waited).

    Submitting a job on a data set and deleting it both start with this lock, so they run one
    after the other: the delete then sees the job (409), or the submit no longer sees the data
    set. A no-op UPDATE, not ``SELECT ... FOR UPDATE``: SQLite ignores the latter, while its
    first write takes the database's write lock (waiting up to the busy timeout) and PostgreSQL
    locks the row.
    """
    result = session.execute(
        update(Dataset)
        .where(Dataset.id == dataset_id, Dataset.owner == owner)
        .values(size_bytes=Dataset.size_bytes)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def delete_dataset(session: Session, dataset: Dataset) -> None:
    """Deletes ``dataset``; refused while a queued or running job uses it.

    Call it under :func:`lock_dataset`, so that no job is submitted between the count and the
    delete."""
    active = count_active_jobs(session, dataset.id)
    if active:
        raise ConflictError(
            f"dataset_id {dataset.id!r} is used by {active} queued or running job(s); "
            "cancel them or wait for them to finish",
            "dataset_id",
        )
    session.delete(dataset)


def create_job(
    session: Session,
    *,
    owner: str,
    dataset_id: str,
    flow_config: dict[str, Any],
    train_config: dict[str, Any],
    total_steps: int,
) -> Job:
    job = Job(
        id=new_id("job"),
        owner=owner,
        dataset_id=dataset_id,
        state=QUEUED,
        flow_config=flow_config,
        train_config=train_config,
        step=0,
        total_steps=total_steps,
        attempts=0,
        cancel_requested=False,
        attempt_start_step=0,
    )
    session.add(job)
    session.flush()
    return job


def _job_filters(owner: str, state: str | None, dataset_id: str | None) -> list[Any]:
    filters = [Job.owner == owner]
    if state is not None:
        filters.append(Job.state == state)
    if dataset_id is not None:
        filters.append(Job.dataset_id == dataset_id)
    return filters


def list_jobs(
    session: Session,
    owner: str,
    limit: int,
    offset: int,
    state: str | None = None,
    dataset_id: str | None = None,
) -> list[Job]:
    query = (
        select(Job)
        .where(*_job_filters(owner, state, dataset_id))
        .order_by(Job.created_at.desc(), Job.id)
        .limit(limit)
        .offset(offset)
    )
    return list(session.scalars(query))


def count_jobs(
    session: Session, owner: str, state: str | None = None, dataset_id: str | None = None
) -> int:
    query = select(func.count()).select_from(Job).where(*_job_filters(owner, state, dataset_id))
    return session.scalar(query)


def delete_job(session: Session, job: Job) -> list[str]:
    """Deletes a finished job with its checkpoints and metrics; returns the checkpoint ids.

    Refused while it is queued or running. The delete is conditional on a terminal state, so a
    job that changes state meanwhile is never removed under its worker.
    """
    checkpoints = select(Checkpoint.id).where(Checkpoint.job_id == job.id)
    checkpoint_ids = list(session.scalars(checkpoints))
    deleted = session.execute(
        delete(Job).where(Job.id == job.id, Job.state.in_(TERMINAL_JOB_STATES))
    ).rowcount
    if not deleted:
        state = session.scalar(select(Job.state).where(Job.id == job.id))
        raise ConflictError(
            f"job_id {job.id!r} is {state}; only a finished job can be deleted (cancel it first)",
            "job_id",
        )
    # The foreign keys cascade; deleting explicitly also covers a database without them.
    session.execute(delete(Checkpoint).where(Checkpoint.job_id == job.id))
    session.execute(delete(Metric).where(Metric.job_id == job.id))
    return checkpoint_ids


def get_job(session: Session, owner: str, job_id: str) -> Job | None:
    return session.scalar(select(Job).where(Job.id == job_id, Job.owner == owner))


def request_cancel(session: Session, job: Job) -> Job:
    """Cancels a queued job at once; asks the worker to stop a running one.

    Both updates are conditional on the state, so a job that a worker claims (or finishes) at
    the same moment is never overwritten; the row is re-read afterwards, so its ``step`` is the
    one the worker had reached when the flag was set.
    """
    now = utcnow()
    cancelled_queued = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.state == QUEUED)
        .values(state=CANCELLED, cancel_requested=True, finished_at=now, updated_at=now)
    ).rowcount
    accepted = (
        cancelled_queued
        or session.execute(
            update(Job)
            .where(Job.id == job.id, Job.state == RUNNING)
            .values(cancel_requested=True, updated_at=now)
        ).rowcount
    )
    session.refresh(job)
    if not accepted:
        raise ConflictError(
            f"job_id {job.id!r} is already {job.state}; only queued or running jobs can be "
            "cancelled",
            "job_id",
        )
    return job


def list_metrics(
    session: Session, job_id: str, after_step: int | None, limit: int
) -> list[Metric]:
    query = select(Metric).where(Metric.job_id == job_id)
    if after_step is not None:
        query = query.where(Metric.step > after_step)
    return list(session.scalars(query.order_by(Metric.step).limit(limit)))


def newest_checkpoint(session: Session, job_id: str) -> Checkpoint | None:
    """The job's newest checkpoint, without its blob."""
    return session.scalar(
        select(Checkpoint)
        .where(Checkpoint.job_id == job_id)
        .order_by(Checkpoint.step.desc())
        .limit(1)
    )


def _models_query(owner: str) -> Any:
    """(job, newest checkpoint) of the tenant's succeeded jobs that have a checkpoint."""
    newest = (
        select(Checkpoint.job_id, func.max(Checkpoint.step).label("step"))
        .group_by(Checkpoint.job_id)
        .subquery()
    )
    return (
        select(Job, Checkpoint)
        .join(newest, newest.c.job_id == Job.id)
        .join(Checkpoint, (Checkpoint.job_id == Job.id) & (Checkpoint.step == newest.c.step))
        .where(Job.owner == owner, Job.state == SUCCEEDED)
    )


def list_models(
    session: Session, owner: str, limit: int, offset: int
) -> list[tuple[Job, Checkpoint]]:
    query = (
        _models_query(owner).order_by(Job.finished_at.desc(), Job.id).limit(limit).offset(offset)
    )
    return [(row.Job, row.Checkpoint) for row in session.execute(query)]


def count_models(session: Session, owner: str) -> int:
    return session.scalar(select(func.count()).select_from(_models_query(owner).subquery()))


def checkpoint_blob(session: Session, checkpoint_id: str) -> bytes:
    return session.scalar(select(Checkpoint.blob).where(Checkpoint.id == checkpoint_id))
