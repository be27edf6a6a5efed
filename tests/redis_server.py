"""A real `redis-server` (Debian's package, installed by `make test`) on a free loopback port, for the tests of the
bridge's shared rate limits and usage. No persistence: a restart starts empty, like a Redis that lost its data."""

from __future__ import annotations

import shutil
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import processes
from bench.processes import Process, free_port


def _answers_ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
        conn.sendall(b"PING\r\n")
        return conn.recv(16).startswith(b"+PONG")


class RedisServer:
    def __init__(self, folder: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is required (Debian's redis-server package; `make test` installs it)")
        self.binary = binary
        self.folder = folder
        self.port = free_port()
        self.process: Process | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = processes.start("redis", [*argv, "--dir", str(self.folder)], self.folder)
        processes.wait_until(lambda: _answers_ping(self.port), self.process, 20.0, poll_s=0.05)

    def kill(self) -> None:
        """SIGKILL: Redis gone at once, as a crashed or partitioned one."""
        assert self.process is not None
        self.process.popen.send_signal(signal.SIGKILL)
        self.process.popen.wait(10)

    def pause(self) -> None:
        """SIGSTOP: Redis accepts connections but never answers (a slow or hung Redis)."""
        assert self.process is not None
        self.process.popen.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.popen.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None:
            self.resume()
            self.process.stop(10)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    try:
        yield server
    finally:
        server.stop()
