"""POST /v1/chat/completions (also at /chat/completions and /v1/inference/chat/completions)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from http_bridge import sse, translate
from http_bridge.deps import ClientDep, FingerprintsDep, SettingsDep, require_api_key
from http_bridge.errors import UpstreamProtocolError, UpstreamTimeoutError, error_event
from http_bridge.request_context import current_request_id
from http_bridge.schemas import ChatCompletionRequest
from inference_service.api.v1 import generation_pb2 as pb

logger = logging.getLogger(__name__)

router = APIRouter(dependencies=[Depends(require_api_key)], tags=["chat"])

Stream = AsyncGenerator[pb.GenerateResponse, None]


async def _first_message(stream: Stream, timeout_s: float) -> pb.GenerateResponse:
    """Await the first response so that early errors (bad prompt, unknown model) become HTTP statuses."""
    try:
        async with asyncio.timeout(timeout_s):
            return await anext(stream)
    except StopAsyncIteration:
        raise UpstreamProtocolError("The inference service ended the stream without output.") from None
    except TimeoutError:
        await stream.aclose()
        raise UpstreamTimeoutError(f"No output from the inference service within {timeout_s:g} s.") from None


async def _events(
    meta: translate.CompletionMeta, body: ChatCompletionRequest, first: pb.GenerateResponse, stream: Stream
) -> AsyncIterator[bytes]:
    """SSE body: role chunks, content chunks, finish chunks, optional usage chunk, [DONE].

    Closing this generator (client gone) closes `stream`, which cancels the gRPC call.
    """
    usage = translate.UsageTotals()
    try:
        for chunk in translate.role_chunks(meta, body.n):
            yield sse.event(chunk)
        response: pb.GenerateResponse | None = first
        while response is not None:
            chunk_or_none = translate.to_chunk(meta, response, usage)
            if chunk_or_none is not None:
                yield sse.event(chunk_or_none)
            response = await anext(stream, None)
        if body.include_usage:
            yield sse.event(translate.usage_chunk(meta, usage))
    except Exception as exc:  # after the 200 went out, errors travel in-band as one error event
        logger.warning("stream failed after it started: %r", exc)
        yield sse.event(error_event(exc))
    finally:
        await stream.aclose()
    yield sse.DONE


async def _read_all(stream: Stream) -> list[pb.GenerateResponse]:
    try:
        return [response async for response in stream]
    finally:
        await stream.aclose()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _read_all_unless_disconnected(stream: Stream, request: Request) -> list[pb.GenerateResponse] | None:
    """The whole stream, or None when the client left first (then the gRPC call is cancelled)."""
    reader = asyncio.ensure_future(_read_all(stream))
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({reader, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if reader.done():
            return reader.result()
        return None
    finally:
        for task in (reader, watcher):
            task.cancel()
        await asyncio.gather(reader, watcher, return_exceptions=True)


@router.post("/v1/chat/completions", response_model=None)
async def create_chat_completion(
    body: ChatCompletionRequest,
    request: Request,
    client: ClientDep,
    settings: SettingsDep,
    fingerprints: FingerprintsDep,
) -> Response:
    request_id = current_request_id()
    meta = translate.CompletionMeta(
        id=f"chatcmpl-{request_id}",
        created=int(time.time()),
        model=body.model,
        system_fingerprint=await fingerprints.get(client, body.model),
        logprobs=body.logprobs,
    )
    logger.info("chat completion: model=%s n=%d stream=%s", body.model, body.n, body.stream)
    stream = client.generate(translate.to_generate_request(body, request_id), request_id, settings.request_timeout_s)
    if body.stream:
        first = await _first_message(stream, settings.first_message_timeout_s)
        return sse.EventStreamResponse(
            _events(meta, body, first, stream),
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    responses = await _read_all_unless_disconnected(stream, request)
    if responses is None:
        logger.info("client disconnected; generation cancelled")
        return Response(status_code=499)  # nobody reads it; nginx's "client closed request"
    return JSONResponse(translate.to_completion(meta, responses, body.n).model_dump())


for _path in ("/chat/completions", "/v1/inference/chat/completions"):
    router.add_api_route(_path, create_chat_completion, methods=["POST"], response_model=None, include_in_schema=False)
