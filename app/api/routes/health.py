"""``/healthz`` (the process is alive), ``/readyz`` (database and broker reachable) and
``/metrics`` (Prometheus; see ``app.metrics``), all without an API key."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from app.api.deps import BrokerProbeDep, SettingsDep
from app.api.schemas import HealthOut, ReadyOut
from app.core.broker import BrokerUnavailable
from app.core.db.session import get_engine

router = APIRouter(tags=["health"])
# Included only when EFNF_METRICS_ENABLED is true (the default).
metrics_router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthOut, summary="Liveness")
def healthz() -> HealthOut:
    """Answers as long as the process serves requests; checks nothing else (no key needed)."""
    return HealthOut()


def _database_revision(database_url: str) -> str | None:
    with get_engine(database_url).connect() as connection:
        connection.execute(text("SELECT 1"))
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


@router.get(
    "/readyz", response_model=ReadyOut, responses={503: {"model": ReadyOut}}, summary="Readiness"
)
async def readyz(settings: SettingsDep, broker_probe: BrokerProbeDep) -> JSONResponse:
    """Ready when the database (migrated) and the broker both answer; 503 otherwise.

    Also reports the schema revision and the number of queued training messages (no key needed).
    """
    ready = ReadyOut(status="ready", database="ok", broker="ok")
    try:
        ready.schema_revision = await run_in_threadpool(_database_revision, settings.database_url)
    except Exception as error:
        ready.database = f"unavailable: {type(error).__name__}: {error}"[:500]
    try:
        ready.queued_messages = await run_in_threadpool(broker_probe)
    except BrokerUnavailable as error:
        ready.broker = f"unavailable: {error}"[:500]
    if ready.database != "ok" or ready.broker != "ok":
        ready.status = "unavailable"
        return JSONResponse(status_code=503, content=ready.model_dump())
    return JSONResponse(content=ready.model_dump())


@metrics_router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}}},
)
async def metrics(request: Request) -> Response:
    """Prometheus metrics (text format): requests and latency by route and status, jobs by
    state, queue depth, running jobs' speed, model-cache and scoring/sampling counters.

    No API key (like `/healthz`); set `EFNF_METRICS_ENABLED=false` to turn it off.
    """
    registry = request.app.state.metrics.registry
    # The scrape reads the database and the broker: off the event loop.
    body = await run_in_threadpool(generate_latest, registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
