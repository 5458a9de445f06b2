"""Slow and half-open clients are cut off (issue 12: 500 half-open unauthenticated connections
were held for 41 s and more): a connection without a complete request head is closed after
EFNF_HEADER_TIMEOUT_S (``python -m app serve``'s protocol), and a body that stops arriving is
answered 408 after EFNF_BODY_READ_TIMEOUT_S."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from app.main import create_app
from app.transport import protocol_with_head_timeout
from tests.service.stack import Stack, served_over_http

pytestmark = [pytest.mark.service, pytest.mark.timeout(60)]

TIMEOUT_S = 1.0


@pytest.fixture
def impatient_server(stack: Stack) -> Iterator[tuple[int, str]]:
    """The app with 1 s head and body timeouts, served as `python -m app serve` serves it."""
    settings = stack.settings.model_copy(
        update={"header_timeout_s": TIMEOUT_S, "body_read_timeout_s": TIMEOUT_S}
    )
    http = protocol_with_head_timeout(settings.header_timeout_s)
    with served_over_http(create_app(settings), http=http) as port:
        yield port, stack.client.headers["Authorization"]


def _read_until_closed(connection: socket.socket, limit_s: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes (or ``limit_s`` passes), and when."""
    started, data = time.monotonic(), b""
    connection.settimeout(limit_s)
    try:
        while chunk := connection.recv(65536):
            data += chunk
    except TimeoutError:
        return data, float("inf")
    return data, time.monotonic() - started


@pytest.mark.parametrize(
    "head", [b"", b"GET /healthz HTTP/1.1\r\n", b"GET /healthz HTTP/1.1\r\nHost: x\r\n"]
)
def test_a_connection_without_a_complete_head_is_closed(
    impatient_server: tuple[int, str], head: bytes
) -> None:
    port, _ = impatient_server
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(head)
        data, closed_after = _read_until_closed(connection, limit_s=10 * TIMEOUT_S)
    assert data == b"" and closed_after < 5 * TIMEOUT_S, (data, closed_after)


def test_a_prompt_request_is_served(impatient_server: tuple[int, str]) -> None:
    port, _ = impatient_server
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data, _ = _read_until_closed(connection, limit_s=10 * TIMEOUT_S)
    assert data.startswith(b"HTTP/1.1 200"), data


def test_a_body_that_stops_arriving_is_answered_408(impatient_server: tuple[int, str]) -> None:
    port, authorization = impatient_server
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(
            b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: " + authorization.encode() + b"\r\n"
            b"Content-Length: 100\r\n\r\n" + b'{"dataset_id": '
        )
        data, closed_after = _read_until_closed(connection, limit_s=10 * TIMEOUT_S)
    assert data.startswith(b"HTTP/1.1 408"), data
    assert b"EFNF_BODY_READ_TIMEOUT_S" in data and closed_after < 5 * TIMEOUT_S
