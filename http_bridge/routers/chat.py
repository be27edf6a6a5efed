"""POST /chat/completions under every base of the public API (routers/public.py): /v1, /, /v1/inference."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import Response

from http_bridge import request_limits
from http_bridge.errors import name_upstream_params
from http_bridge.pipeline import PipelineDep
from http_bridge.schemas.chat import ChatCompletion, ChatCompletionRequest
from http_bridge.translate.chat import ChatBuilder, to_generate_request
from http_bridge.translate.constraints import constraint_param
from ortserve_common.request_context import current_request_id

logger = logging.getLogger(__name__)

router = APIRouter(tags=["chat"])


@router.post(
    "/chat/completions",
    response_model=None,
    responses={200: {"model": ChatCompletion, "description": "chat.completion (SSE chunks when stream is true)"}},
)
async def create_chat_completion(body: ChatCompletionRequest, pipeline: PipelineDep) -> Response:
    request_limits.check_chat(body, pipeline.settings)
    request_id = current_request_id()
    meta = await pipeline.meta(f"chatcmpl-{request_id}", body.model, logprobs=body.logprobs)
    logger.info(
        "chat completion: model=%s n=%d stream=%s tools=%d constraint=%s",
        body.model,
        body.n,
        body.stream,
        len(body.callable_tools()),
        ",".join(body.constraint_fields()) or "none",
    )
    param = constraint_param(body) or ("tools" if body.callable_tools() else None)
    if param is not None:
        name_upstream_params(pipeline.request, {"constraint": param})
    builder = ChatBuilder(meta, named_tool=body.named_function() is not None)
    return await pipeline.respond(body, [to_generate_request(body, request_id)], builder)
