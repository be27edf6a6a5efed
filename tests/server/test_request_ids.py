"""The service logs each Generate under the caller's x-request-id metadata (the bridge's id of the HTTP request)
when it follows the shared rule, else under the request's own id."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any, cast

import pytest

from inference_service.api.v1 import generation_pb2 as pb
from inference_service.engine.loader import ServedModel
from inference_service.models.folder import SearchDefaults
from inference_service.server.servicer import GenerationServicer
from ortserve_common.request_context import RequestIdFilter

pytestmark = pytest.mark.anyio


class LoggingEngine:
    context_length = 64

    async def generate(self, prompt: Any, params: Any, request_id: str) -> AsyncIterator[Any]:
        logging.getLogger("inference_service.test").info("generating %s", request_id)
        for _ in ():
            yield None


class Context:
    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self.metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata


@pytest.mark.parametrize(
    ("metadata", "logged"),
    [
        ((("x-request-id", "chatcmpl-7:a"),), "chatcmpl-7:a"),
        ((), "engine-id"),
        ((("x-request-id", "not sane"),), "engine-id"),
        ((("x-request-id", "a" * 129),), "engine-id"),
    ],
)
async def test_generate_logs_under_the_callers_request_id(
    metadata: tuple[tuple[str, str], ...], logged: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = SimpleNamespace(search=SearchDefaults(temperature=1.0, top_p=1.0, top_k=0))
    model = ServedModel("m", cast(Any, config), cast(Any, LoggingEngine()), "CPUExecutionProvider", "fp32", "fp", 1)
    servicer = GenerationServicer({"m": model})
    caplog.handler.addFilter(RequestIdFilter())
    request = pb.GenerateRequest(request_id="engine-id", prompt="hi")
    with caplog.at_level(logging.INFO, logger="inference_service.test"):
        async for _ in servicer.Generate(request, cast(Any, Context(metadata))):
            pass
    [record] = [r for r in caplog.records if r.name == "inference_service.test"]
    assert record.getMessage() == "generating engine-id"  # the engine's id is the request's own, whatever is logged
    assert getattr(record, "request_id", None) == logged
