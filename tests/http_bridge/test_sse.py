from __future__ import annotations

import json
from collections.abc import AsyncIterator

from http_bridge import sse
from http_bridge.schemas.errors import ErrorBody, ErrorResponse


def test_event_framing_of_model_and_dict() -> None:
    frame = sse.event(ErrorResponse(error=ErrorBody(message="a\nb", type="t")))
    assert frame.startswith(b"data: ") and frame.endswith(b"\n\n")
    assert frame.count(b"\n") == 2  # the newline inside the message is escaped, one data line
    assert json.loads(frame[6:-2])["error"]["message"] == "a\nb"
    assert sse.event({"x": "é"}) == 'data: {"x":"é"}\n\n'.encode()


def test_done_frame() -> None:
    assert sse.DONE == b"data: [DONE]\n\n"


def test_event_stream_response_carries_the_sse_headers() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield sse.DONE

    response = sse.EventStreamResponse(body())
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"  # nginx must not buffer a live stream
