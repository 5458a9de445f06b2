"""Authentication: ``Authorization: Bearer <API key>`` names the tenant of a request.

``ApiKeyMiddleware`` checks the key of every request except the public paths (health, readiness,
the docs, the OpenAPI document, the dashboard page and its static files) before anything else
happens, so an unauthenticated client cannot make the service read, parse or validate a body. A
missing or rejected key is a 401 with ``WWW-Authenticate: Bearer`` (RFC 6750) and a message saying
what was wrong. An accepted key is remembered for ``EFNF_AUTH_CACHE_TTL_S`` (default 1 s; see
``app.resolution.KeyCache``), so a revoked key is refused at most that long after its
revocation; within that time requests skip the database read and the thread hop it needs.
Routes read the tenant through ``get_tenant``, which also declares the scheme in OpenAPI and
refuses a request the middleware did not authenticate.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.errors import error_response
from app.core.db.api_keys import ApiKeyRejected, authenticate, digest
from app.core.db.session import session_factory
from app.resolution import KeyCache

AUTH_FIELD = "Authorization"
TENANT_STATE = "efnf_tenant"
MISSING_KEY = "missing API key: send the header 'Authorization: Bearer <key>'"
# Declares the scheme in OpenAPI (the docs' "Authorize" button); the middleware does the checking.
bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key from `python -m app keys create`, as `Authorization: Bearer <key>`.",
)


class Unauthorized(Exception):
    """A request without a usable API key; ``error`` is the RFC 6750 error code, if any."""

    def __init__(self, message: str, error: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.error = error

    def response(self) -> JSONResponse:
        challenge = 'Bearer realm="efnf"' + (f', error="{self.error}"' if self.error else "")
        response = error_response(401, self.message, AUTH_FIELD)
        response.headers["WWW-Authenticate"] = challenge
        return response


def presented_key(headers: Headers) -> str:
    """The key of an ``Authorization: Bearer <key>`` header; ``Unauthorized`` otherwise."""
    header = headers.get("authorization", "").strip()
    if not header:
        raise Unauthorized(MISSING_KEY)
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized(
            "Authorization header must be 'Bearer <key>' (an API key)", "invalid_request"
        )
    return key.strip()


def tenant_of_key(database_url: str, key: str) -> str:
    # A short session of its own: the connection goes back to the pool before the route runs.
    with session_factory(database_url)() as session:
        try:
            return authenticate(session, key).tenant
        except ApiKeyRejected as rejected:
            raise Unauthorized(str(rejected), "invalid_token") from rejected


class ApiKeyMiddleware:
    """Refuses every HTTP request outside ``public_paths`` (exact) and ``public_prefixes`` that
    has no valid API key."""

    def __init__(
        self,
        app: ASGIApp,
        database_url: str,
        public_paths: Iterable[str],
        public_prefixes: Iterable[str] = (),
        cache_ttl_s: float = 0.0,
    ) -> None:
        self.app = app
        self.database_url = database_url
        self.public_paths = frozenset(public_paths)
        self.public_prefixes = tuple(public_prefixes)
        self.keys = KeyCache(cache_ttl_s)

    def is_public(self, path: str) -> bool:
        return path in self.public_paths or path.startswith(self.public_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        try:
            key = presented_key(Headers(scope=scope))
            key_digest = digest(key)
            tenant = self.keys.get(key_digest)
            if tenant is None:
                tenant = await run_in_threadpool(tenant_of_key, self.database_url, key)
                self.keys.remember(key_digest, tenant)
        except Unauthorized as unauthorized:
            await unauthorized.response()(scope, receive, send)
            return
        state = {**scope.get("state", {}), TENANT_STATE: tenant}
        await self.app({**scope, "state": state}, receive, send)


def request_tenant(request: Request) -> str:
    """The tenant of the request's API key, as authenticated by ``ApiKeyMiddleware``; a plain
    function for routes that read it without FastAPI's dependency machinery (the scoring and
    sampling routes, whose router declares ``get_tenant`` for OpenAPI and runs it anyway)."""
    tenant = request.scope.get("state", {}).get(TENANT_STATE)
    if tenant is None:
        # Only reachable if the middleware is missing: fail closed rather than open.
        raise Unauthorized(MISSING_KEY)
    return tenant


async def get_tenant(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> str:
    """The tenant of the request's API key, as authenticated by ``ApiKeyMiddleware``
    (``async``: read on the event loop, without a thread hop)."""
    return request_tenant(request)


def install_authentication(
    app: FastAPI,
    database_url: str,
    public_paths: Iterable[str] = (),
    public_prefixes: Iterable[str] = (),
    cache_ttl_s: float = 0.0,
) -> None:
    """Puts every path of ``app`` behind an API key but health, readiness, the OpenAPI document
    and ``public_paths`` / ``public_prefixes`` (the pages and their static files); accepted keys
    are trusted for ``cache_ttl_s`` seconds without a database read."""
    public = {"/healthz", "/readyz", app.openapi_url, *public_paths}
    app.add_middleware(
        ApiKeyMiddleware,
        database_url=database_url,
        public_paths=public - {None},
        public_prefixes=public_prefixes,
        cache_ttl_s=cache_ttl_s,
    )

    @app.exception_handler(Unauthorized)
    async def _unauthorized(_: Request, exc: Unauthorized) -> JSONResponse:
        return exc.response()
