"""POST /v1/completions (also at /completions): legacy text completions, one Generate call per prompt."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from http_bridge import limits, sse, streams
from http_bridge.completion_schemas import CompletionRequest, TextCompletion
from http_bridge.completion_translate import ChunkTranslator, CompletionUsage, to_generate_requests, to_text_completion
from http_bridge.deps import ClientDep, FingerprintsDep, SettingsDep, require_api_key
from http_bridge.request_context import current_request_id
from http_bridge.translate import CompletionMeta

logger = logging.getLogger(__name__)

router = APIRouter(dependencies=[Depends(require_api_key)], tags=["completions"])


async def _events(
    translator: ChunkTranslator, merged: AsyncGenerator[streams.Indexed, None], include_usage: bool
) -> AsyncGenerator[bytes, None]:
    """SSE events: text chunks, one finish chunk per choice, optional usage chunk (streams.sse_body frames them)."""
    async for prompt_index, response in merged:
        chunk = translator.chunk(prompt_index, response)
        if chunk is not None:
            yield sse.event(chunk)
    if include_usage:
        yield sse.event(translator.usage_chunk())


@router.post(
    "/v1/completions",
    response_model=None,
    responses={200: {"model": TextCompletion, "description": "text_completion (SSE chunks when stream is true)"}},
)
async def create_completion(
    body: CompletionRequest,
    request: Request,
    client: ClientDep,
    settings: SettingsDep,
    fingerprints: FingerprintsDep,
) -> Response:
    limits.check_completion(body, settings)
    request_id = current_request_id()
    meta = CompletionMeta(
        id=f"cmpl-{request_id}",
        created=int(time.time()),
        model=body.model,
        system_fingerprint=await fingerprints.get(client, body.model),
        logprobs=body.logprobs is not None,
    )
    requests = to_generate_requests(body, request_id)
    logger.info("completion: model=%s prompts=%d n=%d stream=%s", body.model, len(requests), body.n, body.stream)
    calls = [client.generate(req, req.request_id, settings.request_timeout_s) for req in requests]
    if body.stream:
        firsts = await streams.first_messages(calls, settings.first_message_timeout_s)
        translator = ChunkTranslator(meta, body.n, CompletionUsage.for_prompts(len(calls)))
        merged = streams.merge(calls, firsts)
        return sse.EventStreamResponse(
            streams.sse_body(_events(translator, merged, body.include_usage), merged),
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    responses = await streams.read_all_unless_disconnected(streams.merge(calls), request)
    if responses is None:
        logger.info("client disconnected; generation cancelled")
        return Response(status_code=499)  # nobody reads it; nginx's "client closed request"
    return JSONResponse(to_text_completion(meta, responses, len(calls), body.n).model_dump())


router.add_api_route("/completions", create_completion, methods=["POST"], response_model=None, include_in_schema=False)
