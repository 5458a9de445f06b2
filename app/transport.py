"""The HTTP protocol the service runs under uvicorn: h11 with immediate TCP acknowledgements.

Why: a client that writes a request's headers and its body in two ``send`` calls without
``TCP_NODELAY`` (many HTTP libraries and raw-socket clients do) holds the small body back under
Nagle's algorithm until the headers are acknowledged, while the server's kernel *delays* that
acknowledgement (40 ms on Linux loopback, up to 200 ms on other paths), waiting for a reply to
piggy-back it on. The server cannot reply before it has the body, so every such request stalls
for one delayed-ACK timer: the 40-220 ms pauses of single requests. asyncio already sets
``TCP_NODELAY`` on the server's side, so its own responses are never held back; this protocol also
sets ``TCP_QUICKACK`` (Linux) on every read, so the kernel acknowledges each segment at once and
the client's held-back body leaves immediately. Linux clears quick-ack mode by itself after a
while, hence the option is renewed per read (one ``setsockopt``, well under a microsecond).

A deadline for a request's head: uvicorn bounds the idle time between two requests of a
keep-alive connection, but not the time a new connection may take to send its request line and
headers (500 half-open unauthenticated connections were held for as long as their clients liked,
issue 12). :class:`HeadTimeoutH11Protocol` closes a connection whose first request has not fully
arrived ``header_timeout_s`` after it opened (the body has its own limit,
EFNF_BODY_READ_TIMEOUT_S, in app.api.body_limit); ``python -m app serve`` runs it.

The server's own writes: asyncio sets ``TCP_NODELAY`` only on sockets whose ``proto`` is
``IPPROTO_TCP``; a socket accepted from a listener made with ``socket.socket()`` (uvicorn's
``--fd``, ``--uds``-less socket passing, several workers, a process manager's socket) has
``proto`` 0 and keeps Nagle on, so a response written as headers then body waits for the
client's delayed ACK of the headers. The protocol sets ``TCP_NODELAY`` itself on every
connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from uvicorn.protocols.http.h11_impl import H11Protocol

# Linux only; elsewhere the protocol is plain h11 (and clients must set TCP_NODELAY).
TCP_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)


def _tcp_socket(transport: asyncio.BaseTransport) -> socket.socket | None:
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    return sock


def acknowledge_at_once(transport: asyncio.BaseTransport) -> None:
    """Asks the kernel to acknowledge the connection's next segments without delay."""
    sock = _tcp_socket(transport)
    if TCP_QUICKACK is None or sock is None:
        return
    with contextlib.suppress(OSError):  # a closed socket: nothing to acknowledge
        sock.setsockopt(socket.IPPROTO_TCP, TCP_QUICKACK, 1)


def send_at_once(transport: asyncio.BaseTransport) -> None:
    """Turns Nagle's algorithm off for the connection (``TCP_NODELAY``)."""
    sock = _tcp_socket(transport)
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class QuickAckH11Protocol(H11Protocol):
    """uvicorn's h11 protocol that never waits on a timer: ``TCP_NODELAY`` on its writes and
    ``TCP_QUICKACK`` on every read."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        send_at_once(transport)
        acknowledge_at_once(transport)
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        acknowledge_at_once(self.transport)
        super().data_received(data)


class HeadTimeoutH11Protocol(QuickAckH11Protocol):
    """The quick-ack protocol that also closes a connection still without a request head
    ``header_timeout_s`` after it opened."""

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
