"""``/v1/models``: a job's newest checkpoint as a model to inspect, score, sample, download.

A model's id is the id of the job that trains it; while the job runs, the model is its newest
checkpoint, and once it has finished, its final one.

Bodies: the schemas are in ``app.api.schemas``, the array encodings (JSON both ways, ``.npy``
with ``Content-Type`` / ``Accept: application/x-npy``) in ``app.api.encoding``. Every database
read goes through ``app.api.deps.in_session`` (a session of its own, in the thread pool); the
scoring and sampling routes read none on the warm path (``app.resolution``).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Annotated, Any, overload

import numpy as np
from fastapi import APIRouter, Body, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError
from sqlalchemy.orm import Session

from app.api.auth import request_tenant
from app.api.deps import OwnerDep, PageDep, in_session
from app.api.encoding import (
    JSON_MEDIA,
    NPY_MEDIA,
    json_bytes,
    json_model,
    npy_bytes,
    npy_records,
    prefers_npy,
    read_npy,
)
from app.api.errors import ApiError, PydanticBodyError, not_found
from app.api.schemas import (
    SAMPLE_EXAMPLES,
    SCORE_QUERY_PARAMETERS,
    SCORE_REQUEST_BODY,
    SCORE_RESPONSES,
    ErrorOut,
    ModelList,
    ModelOut,
    SampleIn,
    SamplesOut,
    ScoreForm,
    ScoreIn,
    ScoreOut,
)
from app.batching import BatcherRegistry, SampleWork, ScoreWork
from app.core.db import crud
from app.core.db.blobs import clean_metrics
from app.core.db.models import Checkpoint, Job
from app.core.settings import Settings
from app.inputs import json_batch, png_batch
from app.limits import check_sample_request, check_score_request
from app.metrics import ServiceMetrics
from app.model_cache import LoadedModel, ModelCache
from app.previews import preview_png
from app.resolution import ResolutionCache
from flows import FlowConfig, TrainConfig
from flows.config import read_stored
from flows.data import DataError
from flows.errors import InverseNotConverged
from flows.scoring import ScoreResult

router = APIRouter(prefix="/v1/models", tags=["models"])

ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut},
    409: {"model": ErrorOut},
    413: {"model": ErrorOut},
    422: {"model": ErrorOut},
}
# Where a scoring request's batch came from: a JSON body's "inputs", uploaded PNG "files", or a
# whole .npy "body".
INPUTS, FILES, NPY_BODY = "inputs", "files", "body"
QUERY = ("method", "seed")  # an npy body's fields


@dataclass(frozen=True)
class ScoreRequest:
    """A parsed scoring request: its batch (an array, or PNG files as (name, bytes) not yet
    decoded), the request field that holds it, and how to score it."""

    field: str
    batch: np.ndarray | list[tuple[str, bytes]]
    form: ScoreForm

    @property
    def count(self) -> int:
        return len(self.batch)


@dataclass(frozen=True)
class ResolvedModel:
    """A model as the warm path serves it; ``accepted`` remembers the (items, method, field)
    of scoring requests, and the (n, "sample", "n") of sampling requests, that passed the
    limits (the same model, the same settings: the same answer), so that a repeated shape
    skips the work estimate."""

    job: Job
    checkpoint: Checkpoint
    loaded: LoadedModel
    accepted: set[tuple[int, str, str]] = field(default_factory=set, compare=False)


# -- database reads (each runs in the thread pool through in_session) ------------------------
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


def _load(session: Session, owner: str, model_id: str, cache: ModelCache) -> ResolvedModel:
    job, checkpoint = _newest_checkpoint(session, owner, model_id)
    loaded = cache.get(checkpoint.id, lambda: _checkpoint_blob(session, checkpoint))
    return ResolvedModel(job, checkpoint, loaded)


def _model_list(session: Session, owner: str, limit: int, offset: int) -> ModelList:
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


def _model_out(session: Session, owner: str, model_id: str, cache: ModelCache) -> ModelOut:
    model = _load(session, owner, model_id, cache)
    info = model.loaded.info
    return ModelOut.from_rows(
        model.job,
        model.checkpoint,
        info.flow_config,
        info.train_config,
        clean_metrics(info.metrics or {}),
    )


def _download(session: Session, owner: str, model_id: str) -> tuple[Checkpoint, bytes]:
    _, checkpoint = _newest_checkpoint(session, owner, model_id)
    return checkpoint, _checkpoint_blob(session, checkpoint)


# -- the warm path -----------------------------------------------------------------------
async def _resolve(request: Request, owner: str, model_id: str) -> ResolvedModel:
    """The model, from the resolution cache when fresh (no database read, no thread hop)."""
    state = request.app.state
    resolutions: ResolutionCache = state.resolutions
    model = resolutions.get((owner, model_id))
    if model is not None:
        state.model_cache.count_hit()
        return model
    model = await in_session(request, _load, owner, model_id, state.model_cache)
    resolutions.remember(owner, model_id, model.job.state, model)
    return model


async def _client_gone(request: Request) -> None:
    """Returns once the client has disconnected (its body has already been read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


Samples = tuple[np.ndarray, np.ndarray | None]  # the samples and their inverse error bounds


@overload
async def _batched(request: Request, model: ResolvedModel, work: ScoreWork) -> ScoreResult: ...
@overload
async def _batched(request: Request, model: ResolvedModel, work: SampleWork) -> Samples: ...
async def _batched(
    request: Request, model: ResolvedModel, work: ScoreWork | SampleWork
) -> ScoreResult | Samples:
    """Runs ``work`` in the model's next batch; drops it if the client goes away first."""
    batchers: BatcherRegistry = request.app.state.batchers
    batcher = batchers.get(model.checkpoint.id, model.loaded.flow)
    result = asyncio.wrap_future(batcher.submit(work))
    gone = asyncio.ensure_future(_client_gone(request))
    # Cancelling the wrapper cancels the queued work: the batch skips it.
    gone.add_done_callback(lambda _: result.cancel())
    try:
        return await result
    except asyncio.CancelledError:
        if not gone.done() or gone.cancelled():
            raise  # this coroutine itself is being cancelled (the server stops)
        # Nobody reads this answer; 499 is nginx's "client closed request".
        raise ApiError(499, "the client closed the request before it ran", "body") from None
    finally:
        gone.cancel()


def _headers(model: ResolvedModel) -> dict[str, str]:
    return {
        "X-Efnf-Model-Id": model.job.id,
        "X-Efnf-Checkpoint-Id": model.checkpoint.id,
        "X-Efnf-Step": str(model.checkpoint.step),
    }


def _score_response(request: Request, model: ResolvedModel, result: ScoreResult) -> Response:
    """The scores as JSON (``ScoreOut``), or as ``.npy`` records when the client asks."""
    columns = {
        "log_prob": result.log_prob,
        "stderr": result.stderr,
        "bits_per_dim": result.bits_per_dim,
    }
    columns = {name: np.ravel(values) for name, values in columns.items() if values is not None}
    if prefers_npy(request.headers.get("accept")):
        headers = {
            **_headers(model),
            "X-Efnf-Method": result.method,
            "X-Efnf-Lower-Bound": str(result.lower_bound).lower(),
        }
        return Response(npy_bytes(npy_records(columns)), media_type=NPY_MEDIA, headers=headers)
    body = {
        "model_id": model.job.id,
        "checkpoint_id": model.checkpoint.id,
        "step": model.checkpoint.step,
        "method": result.method,
        "count": len(columns["log_prob"]),
        "log_prob": columns["log_prob"],
        "stderr": columns.get("stderr"),
        "bits_per_dim": columns.get("bits_per_dim"),
        "lower_bound": result.lower_bound,
    }
    return Response(json_bytes(body), media_type=JSON_MEDIA)


async def _read_score_request(request: Request, settings: Settings) -> ScoreRequest:
    """The batch and its fields from whichever body the client sent (by ``Content-Type``)."""
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    query = request.query_params if request.scope["query_string"] else {}
    if media == NPY_MEDIA:
        try:
            form = ScoreForm.model_validate({key: query[key] for key in QUERY if key in query})
        except ValidationError as error:
            raise PydanticBodyError(error) from error
        array = read_npy(await request.body(), NPY_BODY, settings.max_upload_bytes)
        return ScoreRequest(NPY_BODY, array, form)
    for name in QUERY:
        if name in query:
            raise ApiError(
                422,
                f"{name}: a query parameter only for an application/x-npy body; send it in the "
                "JSON body or the form",
                name,
            )
    if media == "multipart/form-data":
        return await _read_form(request, settings)
    try:
        body = json_model(ScoreIn, await request.body() or b"{}")
    except ValidationError as error:
        raise PydanticBodyError(error) from error
    return ScoreRequest(INPUTS, body.inputs, body)


async def _read_form(request: Request, settings: Settings) -> ScoreRequest:
    form = await request.form(max_files=settings.max_score_items, max_fields=16)
    uploads = [item for item in form.getlist(FILES) if not isinstance(item, str)]
    if not uploads:
        raise ApiError(422, "files: upload at least one PNG image as 'files'", FILES)
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
            raise ApiError(413, f"files exceed {settings.max_upload_bytes} bytes", FILES)
        files.append((upload.filename or "image.png", content))
    return ScoreRequest(FILES, files, fields)


async def _as_array(scored: ScoreRequest, settings: Settings) -> np.ndarray:
    if scored.field == FILES:
        return await run_in_threadpool(png_batch, scored.batch, settings)
    if isinstance(scored.batch, np.ndarray):
        return scored.batch
    return json_batch(scored.batch)


# -- routes ------------------------------------------------------------------------------
@router.get("", response_model=ModelList, summary="List models")
async def list_models(
    request: Request,
    owner: OwnerDep,
    page: PageDep,
) -> ModelList:
    """The tenant's models: its succeeded jobs with their final checkpoint, newest first.

    Each item is what ``GET /v1/models/{id}`` returns, read from the job's row (its final
    metrics are the checkpoint's) without loading the model.
    """
    return await in_session(request, _model_list, owner, page.limit, page.offset)


@router.get("/{model_id}", response_model=ModelOut, responses=ERRORS, summary="Get a model")
async def get_model(model_id: str, request: Request, owner: OwnerDep) -> ModelOut:
    """The model's configuration, training step and metrics of its checkpoint.

    A model's id is its job's id: the newest checkpoint while the job runs, the final one after.
    """
    return await in_session(request, _model_out, owner, model_id, request.app.state.model_cache)


@router.post(
    "/{model_id}/log-prob",
    response_model=ScoreOut,
    responses={**SCORE_RESPONSES, **ERRORS},
    openapi_extra={"requestBody": SCORE_REQUEST_BODY, "parameters": SCORE_QUERY_PARAMETERS},
    summary="Score a batch (log-likelihood, bits/dim)",
)
async def log_prob(model_id: str, request: Request) -> Response:
    """Scores a batch: JSON ``{"inputs": [...]}``, multipart PNG ``files``, or one ``.npy``
    array (``Content-Type: application/x-npy``, ``method`` and ``seed`` as query parameters).

    Returns per-item log-likelihood, bits/dim for images, the method used (``exact`` or
    ``estimate``) and a standard error when estimated; as JSON, or as a ``.npy`` file of records
    when ``Accept`` prefers ``application/x-npy``. Integer image levels are scored at their bin
    centres (k + 1/2) / 256, so an exact score is deterministic and a rotated image scores the
    same under a rotation-invariant model (see ``flows.scoring``).
    """
    # The body, its query parameters and the tenant are read here rather than declared, so
    # that FastAPI's parameter machinery (a fifth of this route's event-loop time) is skipped;
    # the router's get_tenant still declares and checks the key.
    settings: Settings = request.app.state.settings
    owner = request_tenant(request)
    scored = await _read_score_request(request, settings)
    source = scored.field
    if scored.count > settings.max_score_items:
        raise ApiError(
            422,
            f"{source}: {scored.count} items; at most {settings.max_score_items} per request "
            "(EFNF_MAX_SCORE_ITEMS)",
            source,
        )
    model = await _resolve(request, owner, model_id)
    form = scored.form
    shape = (scored.count, form.method, source)
    if shape not in model.accepted:
        config = model.loaded.info.flow_config
        check_score_request(config, scored.count, form.method, source, settings)
        model.accepted.add(shape)
    try:
        batch = await _as_array(scored, settings)
        started = time.perf_counter()
        result = await _batched(request, model, ScoreWork(batch, form.method, form.seed))
    except DataError as error:
        message = str(error)
        if not message.startswith(source):
            message = f"{source}: {message}"
        raise ApiError(422, message, source) from error
    metrics: ServiceMetrics = request.app.state.metrics
    metrics.scoring_seconds.inc(time.perf_counter() - started)
    metrics.scored_items.inc(len(result.log_prob))
    return _score_response(request, model, result)


@router.post(
    "/{model_id}/samples",
    response_model=SamplesOut,
    responses={
        200: {
            "content": {"application/octet-stream": {}, NPY_MEDIA: {}, "image/png": {}},
            "description": "JSON arrays, a .npy file or a PNG picture, by `format` (without "
            "`format`: a .npy file, as application/x-npy, when `Accept` prefers it to JSON).",
        },
        **ERRORS,
    },
    summary="Draw samples",
)
async def samples(
    model_id: str,
    body: Annotated[SampleIn, Body(openapi_examples=SAMPLE_EXAMPLES)],
    request: Request,
) -> Response:
    """Draws ``n`` samples as JSON, a NumPy ``.npy`` file, or a PNG (image grid / scatter)."""
    settings: Settings = request.app.state.settings
    owner = request_tenant(request)
    if body.n > settings.max_samples:
        raise ApiError(
            422, f"n {body.n} is above the limit {settings.max_samples} (EFNF_MAX_SAMPLES)", "n"
        )
    model = await _resolve(request, owner, model_id)
    shape = (body.n, "sample", "n")
    if shape not in model.accepted:
        check_sample_request(model.loaded.info.flow_config, body.n, settings)
        model.accepted.add(shape)
    try:
        started = time.perf_counter()
        array, bounds = await _batched(
            request, model, SampleWork(body.n, body.seed, body.temperature)
        )
    except InverseNotConverged as error:
        raise ApiError(
            422, f"temperature {body.temperature}: sampling failed, {error}", "temperature"
        ) from error
    metrics: ServiceMetrics = request.app.state.metrics
    metrics.sampling_seconds.inc(time.perf_counter() - started)
    metrics.sampled_items.inc(len(array))
    kind = model.loaded.info.flow_config.data_kind
    headers = _headers(model)
    if "format" not in body.model_fields_set and prefers_npy(request.headers.get("accept")):
        return Response(npy_bytes(array), media_type=NPY_MEDIA, headers=headers)
    if body.format == "npy":
        headers["Content-Disposition"] = 'attachment; filename="samples.npy"'
        return Response(npy_bytes(array), media_type="application/octet-stream", headers=headers)
    if body.format == "png":
        return Response(preview_png(array, kind), media_type="image/png", headers=headers)
    out = {
        "model_id": model.job.id,
        "checkpoint_id": model.checkpoint.id,
        "step": model.checkpoint.step,
        "n": body.n,
        "seed": body.seed,
        "temperature": body.temperature,
        "kind": kind,
        "shape": list(array.shape),
        "dtype": str(array.dtype),
        "samples": array,
        "error_bounds": bounds if body.error_bounds and bounds is not None else None,
    }
    return Response(json_bytes(out), media_type=JSON_MEDIA)


@router.get(
    "/{model_id}/checkpoint",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}, **ERRORS},
    summary="Download the weights",
)
async def download_checkpoint(model_id: str, request: Request, owner: OwnerDep) -> Response:
    """The weights as one safetensors file; the flow and training configs are in its metadata."""
    checkpoint, blob = await in_session(request, _download, owner, model_id)
    headers = {
        "Content-Disposition": 'attachment; filename="model.safetensors"',
        "ETag": f'"{checkpoint.sha256}"',
        "X-Efnf-Checkpoint-Id": checkpoint.id,
        "X-Efnf-Step": str(checkpoint.step),
    }
    return Response(blob, media_type="application/octet-stream", headers=headers)
