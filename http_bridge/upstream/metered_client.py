"""A client wrapper that observes every Generate stream for metrics.py: time to first token, inter-token latency
and usage, by model."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator

import grpc

from http_bridge.metrics import BridgeMetrics, request_started_var
from http_bridge.upstream.client import InferenceClientProtocol
from inference_service.api.v1 import generation_pb2, model_pb2


class MeteredClient:
    """Wraps a client; observes TTFT, inter-token latency and usage of every Generate stream.

    Model labels are recorded only once the service has answered, so unknown model names add no series.
    """

    def __init__(self, inner: InferenceClientProtocol, metrics: BridgeMetrics) -> None:
        self.inner = inner
        self.metrics = metrics

    async def generate(
        self, request: generation_pb2.GenerateRequest, request_id: str, timeout: float | None
    ) -> AsyncGenerator[generation_pb2.GenerateResponse, None]:
        m, model = self.metrics, request.model
        started = request_started_var.get() or time.perf_counter()
        first_text_seen = False
        last_chunk: dict[int, float] = {}  # choice index → when its previous chunk arrived
        stream = self.inner.generate(request, request_id, timeout)
        try:
            async for response in stream:
                now = time.perf_counter()
                if response.HasField("chunk"):
                    if not first_text_seen:
                        first_text_seen = True
                        m.ttft.labels(model).observe(now - started)
                    previous = last_chunk.get(response.index)
                    if previous is not None:
                        m.itl.labels(model).observe(now - previous)
                    last_chunk[response.index] = now
                elif response.HasField("complete"):
                    usage = response.complete.usage
                    if response.index == 0:  # n choices share one prompt
                        m.prompt_tokens.labels(model).inc(usage.prompt_tokens)
                    m.completion_tokens.labels(model).inc(usage.completion_tokens)
                yield response
        except grpc.aio.AioRpcError as exc:
            m.upstream_errors.labels(exc.code().name).inc()
            raise
        finally:
            await stream.aclose()

    async def list_models(self) -> list[model_pb2.ModelInfo]:
        return await self.inner.list_models()

    async def get_model_info(self, model: str) -> model_pb2.ModelInfo:
        return await self.inner.get_model_info(model)

    async def health(self, timeout: float | None) -> bool:
        return await self.inner.health(timeout)
