"""No request waits on a delayed-ACK timer (app/transport.py).

A real uvicorn server runs on a loopback listener made by ``socket.socket()`` (as uvicorn's
``--fd`` or several workers make it: ``proto`` 0, so asyncio leaves Nagle on) with a trivial
ASGI app. The server's accepted socket must have ``TCP_NODELAY``; and, in one run, the median
latency of keep-alive POSTs whose headers and body go out in two ``send`` calls from a client
*without* ``TCP_NODELAY`` must stay near that of a client *with* it. Plain h11 is the negative
control: there each request pays a delayed-ACK timer (>= 40 ms on Linux). Ratios and socket
options, not absolute times, so a loaded machine does not flake the test.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

import pytest
from uvicorn.protocols.http.h11_impl import H11Protocol

from app.transport import QuickAckH11Protocol
from tests.service.stack import served_over_http

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="TCP_QUICKACK is Linux's"),
]

BODY = b'{"inputs": [[0.1, 0.2]]}'


async def echo_app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@contextmanager
def serving(protocol: type[asyncio.Protocol]) -> Iterator[int]:
    with served_over_http(echo_app, http=protocol) as port:
        yield port


def median_latency_s(port: int, nodelay: bool, requests: int = 15) -> float:
    """Median latency of keep-alive POSTs sent as two writes (headers, then body)."""
    head = (
        f"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(BODY)}\r\n\r\n"
    ).encode()
    latencies = []
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(nodelay))
        for _ in range(requests):
            start = time.perf_counter()
            sock.sendall(head)
            sock.sendall(BODY)
            received = b""
            while not received.endswith(BODY):
                chunk = sock.recv(65536)
                assert chunk, "server closed the connection"
                received += chunk
            latencies.append(time.perf_counter() - start)
    return statistics.median(latencies[1:])


def stall_ratio(protocol: type[asyncio.Protocol]) -> float:
    with serving(protocol) as port:
        return median_latency_s(port, nodelay=False) / median_latency_s(port, nodelay=True)


class RecordingProtocol(QuickAckH11Protocol):
    nodelay: ClassVar[list[int]] = []

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        self.nodelay.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


def test_the_server_writes_without_nagle() -> None:
    with serving(RecordingProtocol) as port:
        median_latency_s(port, nodelay=True, requests=2)
    assert RecordingProtocol.nodelay and all(RecordingProtocol.nodelay)


def test_split_writes_do_not_wait_for_a_delayed_ack() -> None:
    assert stall_ratio(QuickAckH11Protocol) < 3.0


def test_plain_h11_stalls_on_split_writes() -> None:
    """The negative control: on plain h11 a client that sets ``TCP_NODELAY`` waits for a
    delayed ACK of every response's headers, as the test above would if the fix were lost."""
    with serving(H11Protocol) as port:
        stalled = median_latency_s(port, nodelay=True)
    with serving(QuickAckH11Protocol) as port:
        fixed = median_latency_s(port, nodelay=True)
    assert stalled / fixed > 5.0


def test_the_service_serves_with_quick_acks() -> None:
    import inspect

    from app import __main__ as entry
    from app.transport import protocol_with_head_timeout

    assert "http=protocol_with_head_timeout(" in inspect.getsource(entry.serve)
    assert issubclass(protocol_with_head_timeout(1.0), QuickAckH11Protocol)
