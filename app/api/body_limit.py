"""A cap on request bodies, enforced while the body streams in (before it is parsed or spooled).

Starlette buffers a multipart body into spooled temporary files before a route runs, so a size
check in the route comes after the whole upload has been received. This ASGI middleware instead
counts the bytes as they arrive and stops the request the moment the count passes the limit; a
declared ``Content-Length`` above the limit is refused before a single body byte is read, and a
chunked body (no ``Content-Length``) is cut off by the same count.

Multipart bodies may carry ``EFNF_MAX_UPLOAD_BYTES`` of file content plus a small envelope for
part headers and form fields; every other body (JSON) is capped by ``EFNF_MAX_JSON_BYTES``.
"""

from __future__ import annotations

import asyncio
import re

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import error_response
from app.core.settings import Settings

DECIMAL = re.compile(r"[0-9]{1,20}")
# Room for multipart boundaries, part headers and small form fields around the file content:
# a scoring form with the most files (EFNF_MAX_SCORE_ITEMS = 1024) needs about 200 KiB.
MULTIPART_ENVELOPE_BYTES = 256 * 1024


class RequestBodyError(HTTPException):
    """A body refused while it streams in; raised from ``receive`` into the route's parser."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(status_code=status_code, detail=message)
        self.message = message


def body_limit(headers: Headers, settings: Settings) -> tuple[int, str]:
    """The byte limit of a request with these headers, and the setting it comes from."""
    if headers.get("content-type", "").lower().startswith("multipart/"):
        return (
            settings.max_upload_bytes + MULTIPART_ENVELOPE_BYTES,
            "EFNF_MAX_UPLOAD_BYTES plus the multipart envelope",
        )
    return settings.max_json_bytes, "EFNF_MAX_JSON_BYTES"


class RequestBodyLimitMiddleware:
    """Refuses bodies over the limit: by their declared length at once, else when the count passes
    it; the body stops being read at that point (413)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        limit, source = body_limit(headers, self.settings)
        declared_text = headers.get("content-length")
        declared: int | None = None
        if declared_text is not None:
            if DECIMAL.fullmatch(declared_text) is None:
                message = f"request body: Content-Length {declared_text!r} is not a byte count"
                await _refuse(scope, receive, send, 400, message)
                return
            declared = int(declared_text)
            if declared > limit:
                message = (
                    f"request body: Content-Length {declared} is above the limit of {limit} "
                    f"bytes ({source}); nothing was read"
                )
                await _refuse(scope, receive, send, 413, message)
                return
        received = 0
        body_complete = False
        patience = self.settings.body_read_timeout_s

        async def limited_receive() -> Message:
            nonlocal received, body_complete
            if body_complete:
                # After the body, receive() waits for a disconnect for as long as a response runs.
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), patience)
            except TimeoutError:
                raise RequestBodyError(
                    408,
                    f"request body: no data for {patience:g} s (EFNF_BODY_READ_TIMEOUT_S) after "
                    f"{received} bytes; the request was stopped",
                ) from None
            if message["type"] == "http.request":
                body_complete = not message.get("more_body", False)
                received += len(message.get("body", b""))
                if declared is not None and received > declared:
                    raise RequestBodyError(
                        400,
                        f"request body: more than the {declared} bytes its Content-Length "
                        "declares arrived; the request was stopped",
                    )
                if received > limit:
                    raise RequestBodyError(
                        413,
                        f"request body: over the limit of {limit} bytes ({source}); the upload "
                        f"was stopped after {received} bytes",
                    )
            return message

        response_started = False

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except RequestBodyError as error:
            # Routes normally turn the error into JSON; this catches one raised outside them.
            if response_started:
                raise
            await _refuse(scope, receive, send, error.status_code, error.message)


async def _refuse(
    scope: Scope, receive: Receive, send: Send, status_code: int, message: str
) -> None:
    response = error_response(status_code, message, "body")
    response.headers["Connection"] = "close"
    await response(scope, receive, send)
