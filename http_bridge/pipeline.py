"""The one response skeleton of the completion endpoints: GenerateRequests → SSE chunks or one JSON object.

A route validates, translates its body into GenerateRequests and picks its ResponseBuilder; `respond` does the
rest: one Generate call per request, the first-message wait (early errors become HTTP statuses), the SSE stream
(translate/common.py's StreamTranslator) or the accumulated object, and 499 when the client leaves first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import JSONResponse, Response

from http_bridge import sse
from http_bridge.accounts.accounting import Accounting, Ticket
from http_bridge.accounts.keys import KeyRecord
from http_bridge.deps import AccountingDep, ApiKeyDep, ClientDep, FingerprintsDep, SettingsDep
from http_bridge.schemas.common import SamplingRequest
from http_bridge.settings import BridgeSettings
from http_bridge.translate.common import (
    CompletionMeta,
    Indexed,
    ResponseBuilder,
    StreamTranslator,
    UsageTotals,
    accumulate,
)
from http_bridge.upstream import streams
from http_bridge.upstream.client import InferenceClientProtocol
from http_bridge.upstream.fingerprints import FingerprintCache
from inference_service.api.v1 import generation_pb2 as pb

logger = logging.getLogger(__name__)


async def _events(
    translator: StreamTranslator[Any, Any], merged: AsyncGenerator[Indexed, None], include_usage: bool
) -> AsyncGenerator[bytes, None]:
    """SSE events: opening chunks, one chunk per response, optional usage chunk (streams.sse_body frames them)."""
    for chunk in translator.opening():
        yield sse.event(chunk)
    async for prompt_index, response in merged:
        chunk_or_none = translator.chunk(prompt_index, response)
        if chunk_or_none is not None:
            yield sse.event(chunk_or_none)
    if include_usage:
        yield sse.event(translator.usage_chunk())


@dataclass(frozen=True, slots=True)
class CompletionPipeline:
    """What a completion route needs beyond its body; a FastAPI dependency (PipelineDep)."""

    request: Request
    client: InferenceClientProtocol
    settings: BridgeSettings
    fingerprints: FingerprintCache
    accounting: Accounting
    key: KeyRecord | None  # None while authentication is off

    async def meta(self, id: str, model: str, *, logprobs: bool) -> CompletionMeta:
        fingerprint = await self.fingerprints.get(self.client, model)
        return CompletionMeta(
            id=id, created=int(time.time()), model=model, system_fingerprint=fingerprint, logprobs=logprobs
        )

    async def respond(
        self, body: SamplingRequest, requests: Sequence[pb.GenerateRequest], builder: ResponseBuilder[Any, Any]
    ) -> Response:
        # The key's model access and rate limit (404/429); the ticket charges real usage when the calls end.
        ticket = await self.accounting.admit(self.key, requests)
        try:
            response = await self._respond(body, requests, builder, ticket)
        except BaseException:
            ticket.settle()
            raise
        if not body.stream:
            ticket.settle()
        return response

    async def _respond(
        self,
        body: SamplingRequest,
        requests: Sequence[pb.GenerateRequest],
        builder: ResponseBuilder[Any, Any],
        ticket: Ticket,
    ) -> Response:
        timeout_s = self.settings.request_timeout_s
        calls = [
            ticket.observe(i, self.client.generate(req, req.request_id, timeout_s)) for i, req in enumerate(requests)
        ]
        if body.stream:
            firsts = await streams.first_messages(calls, self.settings.first_message_timeout_s)
            merged = streams.merge(calls, firsts)
            translator = StreamTranslator(builder, body.n, UsageTotals.for_prompts(len(calls)))
            return sse.EventStreamResponse(
                streams.sse_body(_events(translator, merged, body.include_usage), [merged, *calls])
            )
        responses = await streams.read_all_unless_disconnected(streams.merge(calls), self.request)
        if responses is None:
            logger.info("client disconnected; generation cancelled")
            return Response(status_code=499)  # nobody reads it; nginx's "client closed request"
        return JSONResponse(accumulate(builder, responses, len(calls), body.n).model_dump())


def get_pipeline(
    request: Request,
    client: ClientDep,
    settings: SettingsDep,
    fingerprints: FingerprintsDep,
    accounting: AccountingDep,
    key: ApiKeyDep,
) -> CompletionPipeline:
    return CompletionPipeline(request, client, settings, fingerprints, accounting, key)


PipelineDep = Annotated[CompletionPipeline, Depends(get_pipeline)]
