"""POST /completions under every base of the public API (routers/public.py): legacy text completions, one
Generate call per prompt."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import Response

from http_bridge import request_limits
from http_bridge.errors import name_upstream_params
from http_bridge.pipeline import PipelineDep
from http_bridge.schemas.completions import CompletionRequest, TextCompletion
from http_bridge.translate.completions import TextCompletionBuilder, to_generate_requests
from http_bridge.translate.constraints import constraint_param
from ortserve_common.request_context import current_request_id

logger = logging.getLogger(__name__)

router = APIRouter(tags=["completions"])


@router.post(
    "/completions",
    response_model=None,
    responses={200: {"model": TextCompletion, "description": "text_completion (SSE chunks when stream is true)"}},
)
async def create_completion(body: CompletionRequest, pipeline: PipelineDep) -> Response:
    request_limits.check_completion(body, pipeline.settings)
    request_id = current_request_id()
    meta = await pipeline.meta(f"cmpl-{request_id}", body.model, logprobs=body.logprobs is not None)
    requests = to_generate_requests(body, request_id)
    param = constraint_param(body)
    if param is not None:
        name_upstream_params(pipeline.request, {"constraint": param})
    logger.info(
        "completion: model=%s prompts=%d n=%d stream=%s constraint=%s",
        body.model,
        len(requests),
        body.n,
        body.stream,
        ",".join(body.constraint_fields()) or "none",
    )
    return await pipeline.respond(body, requests, TextCompletionBuilder(meta))
