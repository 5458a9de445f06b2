"""The FastAPI application factory: routers, error handlers and per-app state."""

from __future__ import annotations

from fastapi import FastAPI

from app.api.body_limit import RequestBodyLimitMiddleware
from app.api.errors import install_error_handlers
from app.api.routes import datasets, health, jobs, models
from app.broker import create_celery
from app.model_cache import ModelCache
from app.settings import Settings, get_settings

DESCRIPTION = """
Density estimation and sampling with equivariant normalizing flows.

Upload or generate a data set, submit a training job, watch its progress, then score new data
(log-likelihood, bits/dim) and draw samples from the trained model. Errors are JSON
`{"message", "field", "errors"}` where `field` names the offending request field.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Builds the app for ``settings`` (default: from the environment)."""
    settings = settings or get_settings()
    app = FastAPI(
        title="efnf",
        version="0.1.0",
        description=DESCRIPTION,
        docs_url="/docs",
        redoc_url="/redoc",
    )
    app.state.settings = settings
    app.state.celery = create_celery(settings)
    app.state.model_cache = ModelCache(settings.model_cache_size, settings.serve_device)
    install_error_handlers(app)
    app.add_middleware(RequestBodyLimitMiddleware, settings=settings)
    app.include_router(health.router)
    app.include_router(datasets.router)
    app.include_router(jobs.router)
    app.include_router(models.router)
    return app
