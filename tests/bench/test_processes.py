from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bench.processes import NotReady, free_port, start, wait_until


def test_start_logs_output_and_stop_terminates(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    code = f"import pathlib, time; print('hello'); pathlib.Path({str(ready)!r}).touch(); time.sleep(60)"
    process = start("child", [sys.executable, "-c", code], tmp_path / "logs")
    try:
        wait_until(ready.exists, process, 30)
        assert process.tail() == "hello"  # unbuffered: the line is in the log as soon as it is printed
    finally:
        assert process.stop(10) == -15  # SIGTERM
    assert 0 < free_port() < 65536


def test_wait_until_reports_an_exit_with_the_log_tail(tmp_path: Path) -> None:
    process = start("dies", [sys.executable, "-c", "print('bye'); raise SystemExit(3)"], tmp_path)
    with pytest.raises(NotReady, match=r"dies exited with 3:\nbye"):
        wait_until(lambda: False, process, 30)


def test_wait_until_ignores_only_the_given_errors(tmp_path: Path) -> None:
    process = start("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path)
    try:
        with pytest.raises(NotReady, match="not ready after 0 s"):
            wait_until((tmp_path / "missing").read_text, process, 0.3)  # OSError: not yet
        with pytest.raises(ZeroDivisionError):
            wait_until(lambda: 1 / 0, process, 5)
    finally:
        process.stop()
