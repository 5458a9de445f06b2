"""``/healthz`` (the process is alive) and ``/readyz`` (database and broker reachable)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.api.deps import BrokerProbeDep, SettingsDep
from app.api.schemas import HealthOut, ReadyOut
from app.broker import BrokerUnavailable
from app.db.session import get_engine

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthOut)
def healthz() -> HealthOut:
    return HealthOut()


def _database_revision(database_url: str) -> str | None:
    with get_engine(database_url).connect() as connection:
        connection.execute(text("SELECT 1"))
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


@router.get("/readyz", response_model=ReadyOut, responses={503: {"model": ReadyOut}})
async def readyz(settings: SettingsDep, broker_probe: BrokerProbeDep) -> JSONResponse:
    """Ready when the database (migrated) and the broker both answer; 503 otherwise."""
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
