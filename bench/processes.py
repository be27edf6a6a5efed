"""Start, probe and stop local server processes on 127.0.0.1 (the benchmark's servers and the e2e tests' stacks)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

HOST = "127.0.0.1"


class NotReady(RuntimeError):
    """A process exited, or its readiness check did not pass in time (the message ends with its log's tail)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path  # stdout and stderr together

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, then SIGKILL after `timeout_s`; the exit status."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        return self.popen.returncode


def start(name: str, argv: list[str], log_dir: Path) -> Process:
    """Run `argv` with its output in `log_dir/<name>.log` (Python children unbuffered, so the log is current)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    log.info("starting %s: %s", name, " ".join(argv))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log_path.open("wb") as out:  # the child has its own copy of the descriptor
        popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    return Process(name, popen, log_path)


def wait_until(
    check: Callable[[], object],
    process: Process,
    timeout_s: float,
    *,
    ignore: tuple[type[Exception], ...] = (OSError,),
    poll_s: float = 0.25,
) -> None:
    """Poll `check` until it is truthy; raise NotReady when `process` exits first or `timeout_s` passes.

    An exception in `ignore` counts as "not yet" (the port is not open, the service not up)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            raise NotReady(f"{process.name} exited with {process.popen.returncode}:\n{process.tail()}")
        try:
            if check():
                return
        except ignore:
            pass
        time.sleep(poll_s)
    raise NotReady(f"{process.name} not ready after {timeout_s:.0f} s:\n{process.tail()}")
