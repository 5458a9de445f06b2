"""uvicorn's h11 protocol with a deadline for a request's head.

uvicorn bounds the idle time between two requests of a keep-alive connection, but not the time a
new connection may take to send its request line and headers: 500 half-open unauthenticated
connections were held for as long as their clients liked (issue 12). This protocol closes a
connection whose first request has not fully arrived ``header_timeout_s`` after it opened (the
body has its own limit, EFNF_BODY_READ_TIMEOUT_S, in app.api.body_limit).
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.h11_impl import H11Protocol


class HeadTimeoutH11Protocol(H11Protocol):
    """H11Protocol that closes a connection still without a request head after the timeout."""

    header_timeout_s = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_deadline = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not None:
            self._head_deadline.cancel()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_deadline.cancel()
        super().connection_lost(exc)

    def _head_timed_out(self) -> None:
        if self.cycle is None and not self.transport.is_closing():
            self.logger.info("closing a connection that sent no request head in time")
            self.transport.close()


def protocol_with_head_timeout(seconds: float) -> type[HeadTimeoutH11Protocol]:
    """The protocol class with ``header_timeout_s`` = ``seconds`` (uvicorn takes a class)."""
    return type("HeadTimeoutH11Protocol", (HeadTimeoutH11Protocol,), {"header_timeout_s": seconds})
