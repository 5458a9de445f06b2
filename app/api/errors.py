r"""Error envelopes: every failure is JSON ``{"message", "field", "errors"}``.

Validation errors (pydantic, and the library's ``FlowError``\ s, which carry their ``field``)
become 422 with the dotted path of the field; missing rows (and other tenants' rows) 404; state
conflicts 409. A missing or bad API key is a 401 from ``app.api.auth``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api.schemas import ErrorItem, ErrorOut
from app.core.db.crud import ConflictError
from app.limits import LimitExceeded, Violation
from flows.errors import FlowError

logger = logging.getLogger(__name__)

REQUEST_LOCATIONS = ("body", "query", "path", "header", "form", "file")


class ApiError(Exception):
    """An error with an HTTP status, a message and the field it concerns."""

    def __init__(self, status_code: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.field = field


def not_found(what: str, identifier: str, field: str) -> ApiError:
    """404 naming the path parameter: ``dataset_id 'ds_x': no such data set``."""
    return ApiError(404, f"{field} {identifier!r}: no such {what}", field)


def field_path(loc: Sequence[Any], prefix: str | None = None) -> str:
    """``("body", "flow", "data_shape")`` -> ``"flow.data_shape"``."""
    parts = [str(part) for part in loc]
    if parts and parts[0] in REQUEST_LOCATIONS:
        parts = parts[1:]
    if prefix:
        parts = [prefix, *parts]
    return ".".join(parts) or (prefix or "body")


def _error_items(errors: Iterable[dict[str, Any]], prefix: str | None) -> list[ErrorItem]:
    items = []
    for error in errors:
        if error.get("type") == "json_invalid":
            items.append(_json_error_item(error, prefix))
            continue
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        items.append(ErrorItem(field=field_path(error.get("loc", ()), prefix), message=message))
    return items


def _json_error_item(error: dict[str, Any], prefix: str | None) -> ErrorItem:
    # FastAPI puts the character position where a field name would be: ("body", 17).
    loc = error.get("loc", ())
    position = loc[-1] if loc and isinstance(loc[-1], int) else None
    reason = (error.get("ctx") or {}).get("error") or error.get("msg", "JSON decode error")
    where = f" at character {position}" if position is not None else ""
    return ErrorItem(field=prefix or "body", message=f"invalid JSON{where}: {reason}")


def validation_error(
    errors: Iterable[dict[str, Any]], prefix: str | None = None, status_code: int = 422
) -> JSONResponse:
    items = _error_items(errors, prefix)
    first = items[0] if items else ErrorItem(field=prefix, message="invalid request")
    body = ErrorOut(message=f"{first.field}: {first.message}", field=first.field, errors=items)
    return JSONResponse(status_code=status_code, content=body.model_dump())


def error_response(status_code: int, message: str, field: str | None = None) -> JSONResponse:
    items = [ErrorItem(field=field, message=message)]
    body = ErrorOut(message=message, field=field, errors=items)
    return JSONResponse(status_code=status_code, content=body.model_dump())


def violations_response(violations: Sequence[Violation], status_code: int = 422) -> JSONResponse:
    """Every violation in ``errors``; the first one is the headline ``message`` and ``field``."""
    items = [ErrorItem(field=item.field, message=item.message) for item in violations]
    first = items[0]
    body = ErrorOut(message=first.message, field=first.field, errors=items)
    return JSONResponse(status_code=status_code, content=body.model_dump())


class PydanticBodyError(Exception):
    """A pydantic error raised while validating a body parsed by hand (under ``prefix``)."""

    def __init__(self, error: ValidationError, prefix: str | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.prefix = prefix


def _body_parse_error(exc: StarletteHTTPException) -> JSONResponse:
    """Starlette and FastAPI answer 400 only when a body cannot be parsed (multipart limits,
    malformed forms); FastAPI's "There was an error parsing the body" hides its reason (e.g.
    JSON nested past the recursion limit), so the cause is named when there is one."""
    cause = exc.__cause__
    if cause is not None:
        message = f"body could not be parsed: {type(cause).__name__}: {cause}"
    else:
        message = f"body: {exc.detail}"
    return error_response(400, message, "body")


def install_error_handlers(app: FastAPI) -> None:
    # Imported here: the body limit builds its responses with this module's error_response.
    from app.api.body_limit import RequestBodyError

    @app.exception_handler(RequestValidationError)
    async def _request_validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_error(exc.errors())

    @app.exception_handler(PydanticBodyError)
    async def _body_validation(_: Request, exc: PydanticBodyError) -> JSONResponse:
        return validation_error(exc.error.errors(), exc.prefix)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status_code, exc.message, exc.field)

    @app.exception_handler(LimitExceeded)
    async def _limits(_: Request, exc: LimitExceeded) -> JSONResponse:
        return violations_response(exc.violations, exc.status_code)

    @app.exception_handler(FlowError)
    async def _library(_: Request, exc: FlowError) -> JSONResponse:
        # The library refuses an input (a config that does not fit the data, a malformed
        # batch) or a request its model cannot serve: the request's fault, not the server's.
        return error_response(422, exc.message, exc.field)

    @app.exception_handler(ConflictError)
    async def _conflict(_: Request, exc: ConflictError) -> JSONResponse:
        return error_response(409, str(exc), exc.field)

    @app.exception_handler(RequestBodyError)
    async def _body(_: Request, exc: RequestBodyError) -> JSONResponse:
        response = error_response(exc.status_code, exc.message, "body")
        response.headers["Connection"] = "close"
        return response

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:
            return _body_parse_error(exc)
        response = error_response(exc.status_code, str(exc.detail))
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, f"internal error: {type(exc).__name__}")
