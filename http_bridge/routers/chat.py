"""POST /v1/chat/completions (also at /chat/completions and /v1/inference/chat/completions)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from http_bridge import limits
from http_bridge.deps import require_api_key
from http_bridge.pipeline import PipelineDep
from http_bridge.request_context import current_request_id
from http_bridge.schemas.chat import ChatCompletion, ChatCompletionRequest
from http_bridge.translate.chat import ChatBuilder, to_generate_request

logger = logging.getLogger(__name__)

router = APIRouter(dependencies=[Depends(require_api_key)], tags=["chat"])


@router.post(
    "/v1/chat/completions",
    response_model=None,
    responses={200: {"model": ChatCompletion, "description": "chat.completion (SSE chunks when stream is true)"}},
)
async def create_chat_completion(body: ChatCompletionRequest, pipeline: PipelineDep) -> Response:
    limits.check_chat(body, pipeline.settings)
    request_id = current_request_id()
    meta = await pipeline.meta(f"chatcmpl-{request_id}", body.model, logprobs=body.logprobs)
    logger.info("chat completion: model=%s n=%d stream=%s", body.model, body.n, body.stream)
    return await pipeline.respond(body, [to_generate_request(body, request_id)], ChatBuilder(meta))


for _path in ("/chat/completions", "/v1/inference/chat/completions"):
    router.add_api_route(_path, create_chat_completion, methods=["POST"], response_model=None, include_in_schema=False)
