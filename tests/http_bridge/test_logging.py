from __future__ import annotations

import logging

import httpx
import pytest

from ortserve_common.request_context import RequestIdFilter

pytestmark = pytest.mark.anyio


async def test_log_lines_of_a_request_carry_its_id(http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.handler.addFilter(RequestIdFilter())
    with caplog.at_level(logging.INFO, logger="http_bridge"):
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        await http.post("/v1/chat/completions", json=body, headers={"x-request-id": "req-42"})
    mine = [r for r in caplog.records if r.name.startswith("http_bridge")]
    assert mine and all(getattr(r, "request_id", None) == "req-42" for r in mine)
    outside = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    RequestIdFilter().filter(outside)
    assert outside.request_id == "-"  # type: ignore[attr-defined]
