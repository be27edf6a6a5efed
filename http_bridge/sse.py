"""Server-sent events framing for OpenAI-style streams."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterable
from typing import Any

import anyio
from pydantic import BaseModel
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

DONE = b"data: [DONE]\n\n"
# A live stream must be neither cached nor buffered by a proxy (nginx honours X-Accel-Buffering).
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def event(payload: BaseModel | dict[str, Any]) -> bytes:
    """One `data: {json}` event; compact JSON never contains a raw newline, so one data line suffices."""
    if isinstance(payload, BaseModel):
        body = payload.model_dump_json()
    else:
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    return f"data: {body}\n\n".encode()


class EventStreamResponse(StreamingResponse):
    """An SSE response (with HEADERS) that stops as soon as the client disconnects, whatever the ASGI spec version.

    Starlette only watches `http.disconnect` for ASGI < 2.4; a stream stuck waiting for the next token would
    otherwise keep the generation running. Closing the body iterator cancels the upstream gRPC call.
    """

    media_type = "text/event-stream"

    def __init__(self, content: AsyncIterable[bytes]) -> None:
        super().__init__(content, headers=HEADERS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as group:

                async def stream_then_stop() -> None:
                    with contextlib.suppress(OSError):  # the client went away (how ASGI 2.4 servers say it)
                        await self.stream_response(send)
                    group.cancel_scope.cancel()

                group.start_soon(stream_then_stop)
                await self.listen_for_disconnect(receive)
                group.cancel_scope.cancel()
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()
