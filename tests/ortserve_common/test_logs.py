"""Log formats of both services: JSON lines by default (request id as a field), text for development."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from ortserve_common.logs import configure_logging
from ortserve_common.request_context import request_id_var


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def emit(fmt: str) -> str:
    configure_logging("INFO", fmt)
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(io.StringIO())
    token = request_id_var.set("req-7")
    try:
        logging.getLogger("http_bridge.test").info("hello %s", "there")
    finally:
        request_id_var.reset(token)
    logging.getLogger("http_bridge.test").info("outside")
    stream = handler.stream
    assert isinstance(stream, io.StringIO)
    return stream.getvalue()


def test_json_lines_carry_the_request_id(restore_root: None) -> None:
    first, second = (json.loads(line) for line in emit("json").splitlines())
    assert first["message"] == "hello there" and first["request_id"] == "req-7"
    assert (first["level"], first["logger"]) == ("INFO", "http_bridge.test") and "time" in first
    assert second["request_id"] == "-"


def test_text_format(restore_root: None) -> None:
    assert "INFO http_bridge.test [req-7] hello there" in emit("text")
