"""Text a request carries: names, ids, paths and queries must be printable.

PostgreSQL cannot store NUL in text and answered such ids and names with a 500; ANSI escapes and
right-to-left overrides are stored and echoed back into terminals and pages as-is. Both are
refused with a 422 naming the field: control characters (Unicode category Cc: NUL, ESC, ...)
and the bidirectional formatting characters (U+202A-U+202E, U+2066-U+2069, U+200E, U+200F).
"""

from __future__ import annotations

import unicodedata
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

BIDI_CONTROLS = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# The longest name a data set may have (the column's width).
MAX_NAME_LENGTH = 200


def unprintable(value: str) -> str | None:
    """Why ``value`` is not printable text (its first offending character), or None."""
    for position, character in enumerate(value):
        if character in BIDI_CONTROLS:
            kind = "a bidirectional formatting character"
        elif unicodedata.category(character) == "Cc":
            kind = "a control character"
        else:
            continue
        return f"contains U+{ord(character):04X} ({kind}) at position {position}"
    return None


def check_name(value: str, field: str, max_length: int = MAX_NAME_LENGTH) -> str:
    """``value`` if it is printable and at most ``max_length`` characters, else ValueError
    naming ``field``."""
    problem = unprintable(value)
    if problem is not None:
        raise ValueError(f"{field} {problem}; names must be printable text")
    if len(value) > max_length:
        raise ValueError(f"{field} has {len(value)} characters; at most {max_length} are allowed")
    return value


class PrintableRequestMiddleware:
    """Refuses (422) a request whose path or query string holds unprintable characters, before
    any route binds them to a query."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            field, problem = self._problem(scope)
            if problem is not None:
                # Imported here: app.api.errors imports the schemas, which import this module.
                from app.api.errors import error_response

                response = error_response(422, f"{field} {problem}", field)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    @staticmethod
    def _problem(scope: Scope) -> tuple[str, str | None]:
        problem = unprintable(scope.get("path", ""))
        if problem is not None:
            return "path", problem
        query = scope.get("query_string", b"").decode("latin-1")
        for name, value in parse_qsl(query, keep_blank_values=True):
            problem = unprintable(name)
            if problem is not None:
                return "query", problem
            problem = unprintable(value)
            if problem is not None:
                return name, problem
        return "query", None
