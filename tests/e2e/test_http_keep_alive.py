"""The bridge keeps idle HTTP keep-alive connections open for --timeout-keep-alive-s (75 s), not uvicorn's 5 s: a
proxy in front that keeps idle upstream connections for 60 s (nginx, AWS ALB) must never reuse one the bridge is
closing, or its client gets a 502."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import free_port
from tests.e2e.reliability import start_bridge

pytestmark = pytest.mark.e2e
UVICORN_DEFAULT_S = 5


@pytest.fixture
def bridges(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """(default, --timeout-keep-alive-s 1) bridge ports; /health needs no inference service."""
    ports = free_port(), free_port()
    default = start_bridge("127.0.0.1:1", ports[0], tmp_path, name="bridge-keep-alive-default")
    short = start_bridge("127.0.0.1:1", ports[1], tmp_path, "--timeout-keep-alive-s", "1", name="bridge-keep-alive-1")
    try:
        yield ports
    finally:
        default.stop()
        short.stop()


def get_health(conn: socket.socket) -> bytes:
    """One GET /health on an open connection: the whole response, or b"" when the bridge has closed it."""
    conn.sendall(b"GET /health HTTP/1.1\r\nHost: bridge\r\n\r\n")
    response = b""
    while b"\r\n\r\n" not in response or not response.endswith(b"}"):  # /health's body is one JSON object
        chunk = conn.recv(4096)
        if not chunk:
            return response
        response += chunk
    return response


def test_idle_connections_outlive_uvicorns_default_and_follow_the_setting(bridges: tuple[int, int]) -> None:
    with (
        socket.create_connection(("127.0.0.1", bridges[0])) as default,
        socket.create_connection(("127.0.0.1", bridges[1])) as short,
    ):
        assert get_health(default).startswith(b"HTTP/1.1 200")
        assert get_health(short).startswith(b"HTTP/1.1 200")
        time.sleep(UVICORN_DEFAULT_S + 1)
        assert get_health(default).startswith(b"HTTP/1.1 200")  # the same connection, idle for 6 s
        short.settimeout(5)
        assert short.recv(1) == b""  # closed by the bridge after 1 s idle
