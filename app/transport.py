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
