"""Dependencies of the routes: settings, a database session, the tenant, the broker, the cache
and the process's metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Concatenate, ParamSpec, TypeVar

from celery import Celery
from fastapi import Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from app.api.auth import get_tenant
from app.api.schemas import LARGEST_SQL_INTEGER
from app.core.broker import BrokerProbe
from app.core.db.session import session_factory
from app.core.settings import Settings
from app.metrics import ServiceMetrics
from app.model_cache import ModelCache


# The trivial dependencies are ``async``: FastAPI runs a plain ``def`` dependency in the thread
# pool, a thread hop per dependency per request for a mere attribute read.
async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    """A session per request; routes commit their writes explicitly, the rest is rolled back."""
    session = session_factory(request.app.state.settings.database_url)()
    try:
        yield session
    finally:
        session.close()


Params = ParamSpec("Params")
Result = TypeVar("Result")


async def in_session(
    request: Request,
    work: Callable[Concatenate[Session, Params], Result],
    *args: Params.args,
    **kwargs: Params.kwargs,
) -> Result:
    """``work(session, *args, **kwargs)`` in the thread pool, in a session of its own that is
    closed there: how a coroutine route reads the database without blocking the event loop
    (and without a thread hop on the requests that need no database at all)."""

    def run() -> Result:
        with session_factory(request.app.state.settings.database_url)() as session:
            return work(session, *args, **kwargs)

    return await run_in_threadpool(run)


async def get_celery(request: Request) -> Celery:
    return request.app.state.celery


async def get_broker_probe(request: Request) -> BrokerProbe:
    return request.app.state.broker_probe


async def get_model_cache(request: Request) -> ModelCache:
    return request.app.state.model_cache


async def get_metrics(request: Request) -> ServiceMetrics:
    return request.app.state.metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
# The tenant of the request's API key: the owner of every row it writes and the scope of every
# read.
OwnerDep = Annotated[str, Depends(get_tenant)]
CeleryDep = Annotated[Celery, Depends(get_celery)]
BrokerProbeDep = Annotated[BrokerProbe, Depends(get_broker_probe)]
ModelCacheDep = Annotated[ModelCache, Depends(get_model_cache)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]


@dataclass(frozen=True)
class Page:
    """One page of a list: ``limit`` items (already capped at ``EFNF_PAGE_SIZE_MAX``) from
    ``offset``."""

    limit: int
    offset: int


def get_page(
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=LARGEST_SQL_INTEGER)] = 0,
) -> Page:
    return Page(min(limit, settings.page_size_max), offset)


PageDep = Annotated[Page, Depends(get_page)]
