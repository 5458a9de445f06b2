"""``/v1/models``: a job's newest checkpoint as a model to inspect, score, sample, download.

A model's id is the id of the job that trains it; while the job runs, the model is its newest
checkpoint, and once it has finished, its final one.
"""

from __future__ import annotations

import asyncio
import io
import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Body, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.orm import Session

from app.api.deps import ModelCacheDep, OwnerDep, SessionDep, SettingsDep
from app.api.errors import ApiError, PydanticBodyError, not_found
from app.api.schemas import (
    LARGEST_SQL_INTEGER,
    SAMPLE_EXAMPLES,
    SCORE_EXAMPLES,
    ErrorOut,
    ModelList,
    ModelOut,
    SampleIn,
    SamplesOut,
    ScoreIn,
    ScoreOut,
)
from app.batching import BatcherRegistry, SampleWork, ScoreWork
from app.db import crud
from app.db.blobs import clean_metrics
from app.db.models import Checkpoint, Job
from app.db.session import session_factory
from app.inputs import json_batch, png_batch
from app.limits import check_sample_request, check_score_request
from app.metrics import ServiceMetrics
from app.model_cache import LoadedModel, ModelCache
from app.previews import preview_png
from app.resolution import ResolutionCache
from app.settings import Settings
from flows import FlowConfig, TrainConfig
from flows.config import read_stored
from flows.data import DataError
from flows.errors import InverseNotConverged

router = APIRouter(prefix="/v1/models", tags=["models"])

ERRORS = {
    404: {"model": ErrorOut},
    409: {"model": ErrorOut},
    413: {"model": ErrorOut},
    422: {"model": ErrorOut},
}


class ScoreForm(BaseModel):
    """The form fields that come with uploaded PNG images."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["auto", "exact", "estimate"] = "auto"
    seed: int = Field(0, ge=0, le=2**32 - 1)


SCORE_FILES_SCHEMA = {
    "title": "ScoreFilesIn",
    "type": "object",
    "required": ["files"],
    "properties": {
        "files": {
            "type": "array",
            "items": {"type": "string", "format": "binary"},
            "minItems": 1,
            "description": "PNG images of the model's size, one item each.",
        },
        **ScoreForm.model_json_schema()["properties"],
    },
}
# The body is parsed by hand (JSON or a form), so FastAPI does not publish these two schemas:
# app.main adds them as components, where app.api.openapi bounds them like the others.
SCHEMA_COMPONENTS = {"ScoreIn": ScoreIn.model_json_schema(), "ScoreFilesIn": SCORE_FILES_SCHEMA}
SCORE_REQUEST_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {"$ref": "#/components/schemas/ScoreIn"},
            "examples": SCORE_EXAMPLES,
        },
        "multipart/form-data": {
            "schema": {"$ref": "#/components/schemas/ScoreFilesIn"},
            "example": {"files": ["digit0.png", "digit1.png"], "method": "auto", "seed": 0},
        },
    },
}


@dataclass
class ScoreRequest:
    """A parsed scoring request: JSON ``inputs`` or PNG ``files`` (name, bytes)."""

    field: Literal["inputs", "files"]
    inputs: list[Any]
    method: str
    seed: int


@dataclass
class ResolvedModel:
    job: Job
    checkpoint: Checkpoint
    loaded: LoadedModel


def _newest_checkpoint(session: Session, owner: str, model_id: str) -> tuple[Job, Checkpoint]:
    """The model's job and its newest checkpoint (404 if either is missing)."""
    job = crud.get_job(session, owner, model_id)
    if job is None:
        raise not_found("model", model_id, "model_id")
    checkpoint = crud.newest_checkpoint(session, job.id)
    if checkpoint is None:
        raise ApiError(
            404,
            f"model_id {model_id!r} has no checkpoint yet (job {job.state} at step {job.step})",
            "model_id",
        )
    return job, checkpoint


def _checkpoint_blob(session: Session, checkpoint: Checkpoint) -> bytes:
    blob = crud.checkpoint_blob(session, checkpoint.id)
    if blob is None:
        raise ApiError(409, "the checkpoint was replaced by a newer one; retry", "model_id")
    return blob


def _resolve(session: Session, owner: str, model_id: str, cache: ModelCache) -> ResolvedModel:
    job, checkpoint = _newest_checkpoint(session, owner, model_id)
    loaded = cache.get(checkpoint.id, lambda: _checkpoint_blob(session, checkpoint))
    return ResolvedModel(job, checkpoint, loaded)


@router.get("", response_model=ModelList, summary="List models")
def list_models(
    session: SessionDep,
    settings: SettingsDep,
    owner: OwnerDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=LARGEST_SQL_INTEGER)] = 0,
) -> ModelList:
    """The tenant's models: its succeeded jobs with their final checkpoint, newest first.

    Each item is what ``GET /v1/models/{id}`` returns, read from the job's row (its final
    metrics are the checkpoint's) without loading the model.
    """
    limit = min(limit, settings.page_size_max)
    items = [
        ModelOut.from_rows(
            job,
            checkpoint,
            read_stored(FlowConfig, job.flow_config),
            read_stored(TrainConfig, job.train_config),
            clean_metrics(job.latest_metrics or {}),
        )
        for job, checkpoint in crud.list_models(session, owner, limit, offset)
    ]
    return ModelList(
        items=items, total=crud.count_models(session, owner), limit=limit, offset=offset
    )


@router.get("/{model_id}", response_model=ModelOut, responses=ERRORS, summary="Get a model")
def get_model(
    model_id: str, session: SessionDep, owner: OwnerDep, cache: ModelCacheDep
) -> ModelOut:
    """The model's configuration, training step and metrics of its checkpoint.

    A model's id is its job's id: the newest checkpoint while the job runs, the final one after.
    """
    model = _resolve(session, owner, model_id, cache)
    info = model.loaded.info
    return ModelOut.from_rows(
        model.job,
        model.checkpoint,
        info.flow_config,
        info.train_config,
        clean_metrics(info.metrics or {}),
    )


def _tolist(values: np.ndarray | None) -> list[float] | None:
    return None if values is None else [float(value) for value in np.asarray(values).ravel()]


async def _resolve_cached(request: Request, owner: str, model_id: str) -> ResolvedModel:
    """The model, from the resolution cache when fresh (no database read, no thread hop)."""
    resolutions: ResolutionCache = request.app.state.resolutions
    model = resolutions.get((owner, model_id))
    if model is None:
        model = await run_in_threadpool(_resolve_in_session, request, owner, model_id)
        resolutions.remember(owner, model_id, model.job.state, model)
    else:
        request.app.state.model_cache.count_hit()
    return model


def _resolve_in_session(request: Request, owner: str, model_id: str) -> ResolvedModel:
    with session_factory(request.app.state.settings.database_url)() as session:
        return _resolve(session, owner, model_id, request.app.state.model_cache)


async def _client_gone(request: Request) -> None:
    """Returns once the client has disconnected (its body has already been read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _batched(request: Request, model: ResolvedModel, work: ScoreWork | SampleWork) -> Any:
    """Runs ``work`` in the model's next batch; drops it if the client goes away first."""
    batchers: BatcherRegistry = request.app.state.batchers
    batcher = batchers.get(model.checkpoint.id, model.loaded.flow)
    result = asyncio.wrap_future(batcher.submit(work))
    gone = asyncio.ensure_future(_client_gone(request))
    try:
        await asyncio.wait({result, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if not result.done():
        result.cancel()  # still queued: the batch will skip it
        # Nobody reads this answer; 499 is nginx's "client closed request".
        raise ApiError(499, "the client closed the request before it ran", "body")
    return result.result()


def _json(body: BaseModel) -> Response:
    """``body`` serialised once by pydantic (in Rust), bypassing FastAPI's second validation
    and encoding of a returned model; the route's ``response_model`` still documents it."""
    return Response(body.model_dump_json(), media_type="application/json")


async def _score(
    request: Request, settings: Settings, owner: str, model_id: str, scored: ScoreRequest
) -> Response:
    model = await _resolve_cached(request, owner, model_id)
    field = scored.field
    config = model.loaded.info.flow_config
    check_score_request(config, len(scored.inputs), scored.method, field, settings)
    try:
        if field == "files":
            batch = await run_in_threadpool(png_batch, scored.inputs, settings)
        else:
            batch = json_batch(scored.inputs)
        started = time.perf_counter()
        result = await _batched(request, model, ScoreWork(batch, scored.method, scored.seed))
        metrics: ServiceMetrics = request.app.state.metrics
        metrics.scoring_seconds.inc(time.perf_counter() - started)
        metrics.scored_items.inc(len(result.log_prob))
    except DataError as error:
        message = str(error)
        if not message.startswith(field):
            message = f"{field}: {message}"
        raise ApiError(422, message, field) from error
    return _json(
        ScoreOut(
            model_id=model.job.id,
            checkpoint_id=model.checkpoint.id,
            step=model.checkpoint.step,
            method=result.method,
            count=len(result.log_prob),
            log_prob=_tolist(result.log_prob),
            stderr=_tolist(result.stderr),
            bits_per_dim=_tolist(result.bits_per_dim),
            lower_bound=result.lower_bound,
        )
    )


async def _score_request_from_form(request: Request, settings: Settings) -> ScoreRequest:
    form = await request.form(max_files=settings.max_score_items, max_fields=16)
    uploads = [item for item in form.getlist("files") if not isinstance(item, str)]
    if not uploads:
        raise ApiError(422, "files: upload at least one PNG image as 'files'", "files")
    try:
        fields = ScoreForm.model_validate(
            {key: form[key] for key in ("method", "seed") if key in form}
        )
    except ValidationError as error:
        raise PydanticBodyError(error) from error
    files, total = [], 0
    for upload in uploads:
        content = await upload.read()
        total += len(content)
        if total > settings.max_upload_bytes:
            raise ApiError(413, f"files exceed {settings.max_upload_bytes} bytes", "files")
        files.append((upload.filename or "image.png", content))
    return ScoreRequest("files", files, fields.method, fields.seed)


@router.post(
    "/{model_id}/log-prob",
    response_model=ScoreOut,
    responses=ERRORS,
    openapi_extra={"requestBody": SCORE_REQUEST_BODY},
    summary="Score a batch (log-likelihood, bits/dim)",
)
async def log_prob(
    model_id: str, request: Request, settings: SettingsDep, owner: OwnerDep
) -> Response:
    """Scores a batch: JSON ``{"inputs": [...]}`` or multipart PNG ``files``.

    Returns per-item log-likelihood, bits/dim for images, the method used (``exact`` or
    ``estimate``) and a standard error when estimated. Integer image levels are scored at their
    bin centres (k + 1/2) / 256, so an exact score is deterministic and a rotated image scores
    the same under a rotation-invariant model (see ``flows.scoring``).
    """
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        score_request = await _score_request_from_form(request, settings)
    else:
        raw = await request.body()
        try:
            body = ScoreIn.model_validate_json(raw or b"{}")
        except ValidationError as error:
            raise PydanticBodyError(error) from error
        score_request = ScoreRequest("inputs", body.inputs, body.method, body.seed)
    count = len(score_request.inputs)
    if count > settings.max_score_items:
        field = score_request.field
        raise ApiError(
            422,
            f"{field}: {count} items; at most {settings.max_score_items} per request "
            "(EFNF_MAX_SCORE_ITEMS)",
            field,
        )
    return await _score(request, settings, owner, model_id, score_request)


@router.post(
    "/{model_id}/samples",
    response_model=SamplesOut,
    responses={
        200: {
            "content": {"application/octet-stream": {}, "image/png": {}},
            "description": "JSON arrays, a .npy file or a PNG picture, by `format`.",
        },
        **ERRORS,
    },
    summary="Draw samples",
)
async def samples(
    model_id: str,
    body: Annotated[SampleIn, Body(openapi_examples=SAMPLE_EXAMPLES)],
    request: Request,
    settings: SettingsDep,
    owner: OwnerDep,
) -> Any:
    """Draws ``n`` samples as JSON, a NumPy ``.npy`` file, or a PNG (image grid / scatter)."""
    if body.n > settings.max_samples:
        raise ApiError(
            422, f"n {body.n} is above the limit {settings.max_samples} (EFNF_MAX_SAMPLES)", "n"
        )
    model = await _resolve_cached(request, owner, model_id)
    check_sample_request(model.loaded.info.flow_config, body.n, settings)
    try:
        started = time.perf_counter()
        array, bounds = await _batched(
            request, model, SampleWork(body.n, body.seed, body.temperature)
        )
        metrics: ServiceMetrics = request.app.state.metrics
        metrics.sampling_seconds.inc(time.perf_counter() - started)
        metrics.sampled_items.inc(len(array))
    except InverseNotConverged as error:
        raise ApiError(
            422, f"temperature {body.temperature}: sampling failed, {error}", "temperature"
        ) from error
    kind = model.loaded.info.flow_config.data_kind
    headers = {"X-Efnf-Checkpoint-Id": model.checkpoint.id}
    if body.format == "npy":
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        headers["Content-Disposition"] = 'attachment; filename="samples.npy"'
        return Response(buffer.getvalue(), media_type="application/octet-stream", headers=headers)
    if body.format == "png":
        return Response(preview_png(array, kind), media_type="image/png", headers=headers)
    return _json(
        SamplesOut(
            model_id=model.job.id,
            checkpoint_id=model.checkpoint.id,
            step=model.checkpoint.step,
            n=body.n,
            seed=body.seed,
            temperature=body.temperature,
            kind=kind,
            shape=list(array.shape),
            dtype=str(array.dtype),
            samples=array.tolist(),
            error_bounds=_tolist(bounds) if body.error_bounds else None,
        )
    )


@router.get(
    "/{model_id}/checkpoint",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}, **ERRORS},
    summary="Download the weights",
)
def download_checkpoint(model_id: str, session: SessionDep, owner: OwnerDep) -> Response:
    """The weights as one safetensors file; the flow and training configs are in its metadata."""
    _, checkpoint = _newest_checkpoint(session, owner, model_id)
    blob = _checkpoint_blob(session, checkpoint)
    headers = {
        "Content-Disposition": 'attachment; filename="model.safetensors"',
        "ETag": f'"{checkpoint.sha256}"',
        "X-Efnf-Checkpoint-Id": checkpoint.id,
        "X-Efnf-Step": str(checkpoint.step),
    }
    return Response(blob, media_type="application/octet-stream", headers=headers)
