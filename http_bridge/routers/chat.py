"""POST /v1/chat/completions (also at /chat/completions and /v1/inference/chat/completions)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from http_bridge import limits, sse, streams, translate
from http_bridge.deps import ClientDep, FingerprintsDep, SettingsDep, require_api_key
from http_bridge.request_context import current_request_id
from http_bridge.schemas import ChatCompletion, ChatCompletionRequest
from inference_service.api.v1 import generation_pb2 as pb

logger = logging.getLogger(__name__)

router = APIRouter(dependencies=[Depends(require_api_key)], tags=["chat"])


async def _events(
    meta: translate.CompletionMeta, body: ChatCompletionRequest, first: pb.GenerateResponse, stream: streams.Stream
) -> AsyncGenerator[bytes, None]:
    """SSE events: role chunks, content chunks, finish chunks, optional usage chunk (streams.sse_body frames them)."""
    usage = translate.UsageTotals()
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


@router.post(
    "/v1/chat/completions",
    response_model=None,
    responses={200: {"model": ChatCompletion, "description": "chat.completion (SSE chunks when stream is true)"}},
)
async def create_chat_completion(
    body: ChatCompletionRequest,
    request: Request,
    client: ClientDep,
    settings: SettingsDep,
    fingerprints: FingerprintsDep,
) -> Response:
    limits.check_chat(body, settings)
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
        first = await streams.first_message(stream, settings.first_message_timeout_s)
        return sse.EventStreamResponse(
            streams.sse_body(_events(meta, body, first, stream), stream),
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    responses = await streams.read_all_unless_disconnected(stream, request)
    if responses is None:
        logger.info("client disconnected; generation cancelled")
        return Response(status_code=499)  # nobody reads it; nginx's "client closed request"
    return JSONResponse(translate.to_completion(meta, responses, body.n).model_dump())


for _path in ("/chat/completions", "/v1/inference/chat/completions"):
    router.add_api_route(_path, create_chat_completion, methods=["POST"], response_model=None, include_in_schema=False)
