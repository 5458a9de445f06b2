"""The browser side of the service: the dashboard at ``/`` and the API docs at ``/docs`` and
``/redoc``, every file served by this app (``app/static/``), so that they work without internet.

The pages are public (they hold no data); the dashboard asks for an API key and sends it with
every ``/v1`` request, so a key still sees only its tenant's objects. Third-party files live in
``app/static/vendor/`` (versions in its ``VERSIONS``; ``scripts/vendor_web_assets.sh`` refreshes
them from npm).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"
STATIC_URL = "/static"
DASHBOARD_URL = "/"
DOCS_URL = "/docs"
DOCS_OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
REDOC_URL = "/redoc"
# Paths anyone may fetch: the pages and every file under STATIC_URL.
PUBLIC_PATHS = (DASHBOARD_URL, DOCS_URL, DOCS_OAUTH2_REDIRECT_URL, REDOC_URL)
PUBLIC_PREFIXES = (f"{STATIC_URL}/",)

SWAGGER_UI_PARAMETERS = {
    # Swagger UI would otherwise send the document to validator.swagger.io for a badge.
    "validatorUrl": None,
    "persistAuthorization": True,
}


def _vendor(path: str) -> str:
    return f"{STATIC_URL}/vendor/{path}"


def install_web(app: FastAPI) -> None:
    """Serves the dashboard, the static files and the self-hosted Swagger UI and ReDoc pages.

    ``app`` must be created with ``docs_url=None, redoc_url=None`` (FastAPI's own pages load
    their scripts from a CDN).
    """
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="static")
    openapi_url = app.openapi_url or "/openapi.json"
    favicon = f"{STATIC_URL}/dashboard/favicon.svg"

    @app.get(DASHBOARD_URL, include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(STATIC_DIR / "dashboard" / "index.html", media_type="text/html")

    @app.get(DOCS_URL, include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=_vendor("swagger-ui/swagger-ui-bundle.js"),
            swagger_css_url=_vendor("swagger-ui/swagger-ui.css"),
            swagger_favicon_url=favicon,
            oauth2_redirect_url=DOCS_OAUTH2_REDIRECT_URL,
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        )

    @app.get(DOCS_OAUTH2_REDIRECT_URL, include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC_URL, include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=_vendor("redoc/redoc.standalone.js"),
            redoc_favicon_url=favicon,
            with_google_fonts=False,
        )
