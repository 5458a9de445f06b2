"""The FastAPI application factory: routers, error handlers and per-app state."""

from __future__ import annotations

from fastapi import Depends, FastAPI

from app.api.auth import get_tenant, install_authentication
from app.api.body_limit import RequestBodyLimitMiddleware
from app.api.errors import install_error_handlers
from app.api.openapi import install_limited_openapi
from app.api.routes import datasets, health, jobs, models
from app.api.schemas import SCORE_BODY_COMPONENTS, ErrorOut
from app.api.text import PrintableRequestMiddleware
from app.batching import BatcherRegistry
from app.core.broker import BrokerProbe, create_celery
from app.core.settings import Settings, get_settings
from app.gc_tuning import collect_young_objects_less_often
from app.metrics import METRICS_PATH, RequestMetricsMiddleware, ServiceMetrics
from app.model_cache import ModelCache
from app.resolution import ResolutionCache
from app.web import PUBLIC_PATHS, PUBLIC_PREFIXES, install_web

DESCRIPTION = """
Density estimation and sampling with equivariant normalizing flows.

Upload or generate a data set, submit a training job, watch its progress, then score new data
(log-likelihood, bits/dim) and draw samples from the trained model. Errors are JSON
`{"message", "field", "errors"}` where `field` names the offending request field.

Every `/v1` route needs an API key, sent as `Authorization: Bearer <key>`; create one with
`python -m app keys create --tenant <tenant>` (`python -m app serve` creates a first one). A key
sees only its tenant's data sets, jobs and models. The dashboard at `/` signs in with a key and
drives all of it from a browser.
"""

AUTHENTICATED = {
    "dependencies": [Depends(get_tenant)],
    "responses": {
        # FastAPI's own answer to a body it cannot parse at all (bytes that are not JSON, broken
        # multipart), before any validation.
        400: {"model": ErrorOut, "description": "The request body could not be parsed."},
        401: {"model": ErrorOut, "description": "Missing, invalid or revoked API key."},
    },
}


def create_app(settings: Settings | None = None) -> FastAPI:
    """Builds the app for ``settings`` (default: from the environment)."""
    settings = settings or get_settings()
    collect_young_objects_less_often()
    app = FastAPI(
        title="efnf",
        version="0.1.0",
        description=DESCRIPTION,
        # Served by app.web from this app's own files instead (FastAPI's use a CDN).
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.celery = create_celery(settings)
    app.state.broker_probe = BrokerProbe(app.state.celery, settings.train_queue)
    app.state.model_cache = ModelCache(settings.model_cache_size, settings.serve_device)
    app.state.metrics = ServiceMetrics(settings, app.state.broker_probe, app.state.model_cache)
    app.state.batchers = BatcherRegistry(
        settings.model_cache_size, settings.batch_max_items, settings.batch_max_wait_ms / 1000
    )
    app.state.resolutions = ResolutionCache(settings.checkpoint_refresh_s)
    install_error_handlers(app)
    app.add_middleware(RequestBodyLimitMiddleware, settings=settings)
    app.add_middleware(PrintableRequestMiddleware)
    # Outside the body limit and the text check: a request without a valid key is refused
    # before its body is read, let alone measured.
    public = [METRICS_PATH] if settings.metrics_enabled else []
    install_authentication(
        app,
        settings.database_url,
        [*PUBLIC_PATHS, *public],
        PUBLIC_PREFIXES,
        settings.auth_cache_ttl_s,
    )
    # Outermost: requests refused by the key check are counted too.
    app.add_middleware(RequestMetricsMiddleware, fastapi_app=app, metrics=app.state.metrics)
    app.include_router(health.router)
    if settings.metrics_enabled:
        app.include_router(health.metrics_router)
    # On the routers too: the scheme and the 401 appear in OpenAPI for every operation.
    app.include_router(datasets.router, **AUTHENTICATED)
    app.include_router(jobs.router, **AUTHENTICATED)
    app.include_router(models.router, **AUTHENTICATED)
    install_limited_openapi(app, settings, SCORE_BODY_COMPONENTS)
    install_web(app)
    return app
