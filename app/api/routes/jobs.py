"""``/v1/jobs``: submit training jobs, watch their progress and metrics, cancel, delete."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Body, Query, Request, Response

from app.api.deps import CeleryDep, ModelCacheDep, OwnerDep, PageDep, SessionDep, SettingsDep
from app.api.errors import ApiError, not_found
from app.api.schemas import (
    JOB_EXAMPLES,
    LARGEST_SQL_INTEGER,
    ErrorOut,
    JobIn,
    JobList,
    JobOut,
    MetricPoint,
    MetricsOut,
)
from app.core.broker import enqueue_training
from app.core.db import crud, lifecycle
from app.core.db.models import Job, JobState
from app.limits import LimitExceeded, check_storage_quota, job_limit_errors
from flows.config import check_data_compatible

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

ERRORS = {
    404: {"model": ErrorOut},
    409: {"model": ErrorOut},
    413: {"model": ErrorOut},
    422: {"model": ErrorOut},
}


def _validate_against_dataset(session: SessionDep, owner: str, body: JobIn) -> None:
    # Locked until the job is committed: a concurrent delete waits, then sees the job (409).
    locked = crud.lock_dataset(session, owner, body.dataset_id)
    dataset = crud.get_dataset(session, owner, body.dataset_id) if locked else None
    if dataset is None:
        raise ApiError(422, f"dataset_id {body.dataset_id!r}: no such data set", "dataset_id")
    # An InputError naming its field; app.api.errors answers it with a 422.
    check_data_compatible(body.flow, dataset.kind, tuple(dataset.shape))


@router.post(
    "", status_code=202, response_model=JobOut, responses=ERRORS, summary="Submit a training job"
)
def submit_job(
    body: Annotated[JobIn, Body(openapi_examples=JOB_EXAMPLES)],
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    owner: OwnerDep,
    celery: CeleryDep,
) -> JobOut:
    """Queues a training job; the flow config is checked against the data set first.

    Refused (422, naming the field) when a config is invalid, does not fit the data set's kind
    and shape, or is over one of this service's limits: the bounds published in this schema
    (`EFNF_MAX_STEPS`, `EFNF_MAX_BATCH_SIZE`, ...) and estimates of the run's memory and work.
    The answer is the queued job; poll `GET /v1/jobs/{job_id}` for its progress.
    """
    violations = job_limit_errors(body.flow, body.training, settings)
    if violations:
        raise LimitExceeded(violations)
    _validate_against_dataset(session, owner, body)
    # Checkpoints count towards the quota: no new job for a tenant already at it.
    check_storage_quota(
        crud.tenant_storage_bytes(session, owner), 1, "dataset_id", "a job's checkpoints", settings
    )
    job = crud.create_job(
        session,
        owner=owner,
        dataset_id=body.dataset_id,
        flow_config=body.flow.model_dump(mode="json"),
        train_config=body.training.model_dump(mode="json"),
        total_steps=body.training.steps,
    )
    lifecycle.mark_enqueued(session, job.id)
    session.commit()
    try:
        enqueue_training(celery, settings, job.id)
    except Exception as error:
        logger.warning("job %s saved but not sent (%s); the reaper will send it", job.id, error)
        lifecycle.mark_unsent(session, job.id)
        session.commit()
    session.refresh(job)
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return JobOut.from_row(job)


@router.get("", response_model=JobList, summary="List jobs")
def list_jobs(
    session: SessionDep,
    owner: OwnerDep,
    page: PageDep,
    state: JobState | None = None,
    dataset_id: str | None = None,
) -> JobList:
    """The tenant's jobs, newest first, optionally of one state or one data set; `total`
    counts all that match the filters."""
    rows = crud.list_jobs(
        session, owner, page.limit, page.offset, state=state, dataset_id=dataset_id
    )
    return JobList(
        items=[JobOut.from_row(row) for row in rows],
        total=crud.count_jobs(session, owner, state=state, dataset_id=dataset_id),
        limit=page.limit,
        offset=page.offset,
    )


def _job_or_404(session: SessionDep, owner: str, job_id: str) -> Job:
    job = crud.get_job(session, owner, job_id)
    if job is None:
        raise not_found("job", job_id, "job_id")
    return job


@router.get("/{job_id}", response_model=JobOut, responses=ERRORS, summary="Get a job")
def get_job(job_id: str, session: SessionDep, owner: OwnerDep) -> JobOut:
    """State, step/total, progress %, ETA, latest metrics and the error reason, if any."""
    return JobOut.from_row(_job_or_404(session, owner, job_id))


@router.get(
    "/{job_id}/metrics",
    response_model=MetricsOut,
    responses=ERRORS,
    summary="Get a job's metric history",
)
def get_job_metrics(
    job_id: str,
    session: SessionDep,
    owner: OwnerDep,
    after_step: Annotated[
        int | None, Query(ge=0, le=LARGEST_SQL_INTEGER, description="Only steps after this.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> MetricsOut:
    """The metric history by step (ascending); page with ``after_step``.

    Each point has the training loss, `nll` (points) or `bpd` (images), the learning rate, the
    gradient norm, examples/s and the validation metric (`val_nll` or `val_bpd`).
    """
    job = _job_or_404(session, owner, job_id)
    rows = crud.list_metrics(session, job.id, after_step, limit)
    return MetricsOut(job_id=job.id, items=[MetricPoint.from_row(row) for row in rows])


@router.post(
    "/{job_id}/cancel",
    status_code=202,
    response_model=JobOut,
    responses=ERRORS,
    summary="Cancel a job",
)
def cancel_job(job_id: str, session: SessionDep, owner: OwnerDep) -> JobOut:
    """Cancels a queued job at once, or asks the worker to stop a running one (it checkpoints)."""
    job = crud.request_cancel(session, _job_or_404(session, owner, job_id))
    session.commit()
    return JobOut.from_row(job)


@router.delete("/{job_id}", status_code=204, responses=ERRORS, summary="Delete a finished job")
def delete_job(
    job_id: str, request: Request, session: SessionDep, owner: OwnerDep, cache: ModelCacheDep
) -> Response:
    """Deletes a finished job with its metrics and checkpoints (so its model too); refused
    (409) while it is queued or running: cancel it first."""
    checkpoint_ids = crud.delete_job(session, _job_or_404(session, owner, job_id))
    session.commit()
    # Every cache that serves the model forgets it, so it is a 404 from the next request on.
    request.app.state.resolutions.forget(owner, job_id)
    request.app.state.batchers.discard(checkpoint_ids)
    cache.discard(checkpoint_ids)
    return Response(status_code=204)
