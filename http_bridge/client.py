"""Thin async client over the gRPC stubs; tests substitute any object with these methods."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Protocol

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from inference_service.api.v1 import generation_pb2, generation_pb2_grpc, model_pb2, model_pb2_grpc

READY_SERVICE = "inference_service.api.v1.GenerationService"


class InferenceClientProtocol(Protocol):
    def generate(
        self, request: generation_pb2.GenerateRequest, request_id: str, timeout: float | None
    ) -> AsyncGenerator[generation_pb2.GenerateResponse, None]:
        """Stream the responses; closing the generator (aclose) cancels the call."""
        ...

    async def list_models(self) -> list[model_pb2.ModelInfo]: ...

    async def get_model_info(self, model: str) -> model_pb2.ModelInfo: ...

    async def health(self, timeout: float | None) -> bool: ...


class InferenceClient:
    """The production client: one shared grpc.aio channel, owned by the app's lifespan."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._generation = generation_pb2_grpc.GenerationServiceStub(channel)
        self._models = model_pb2_grpc.ModelServiceStub(channel)
        self._health = health_pb2_grpc.HealthStub(channel)

    async def generate(
        self, request: generation_pb2.GenerateRequest, request_id: str, timeout: float | None
    ) -> AsyncGenerator[generation_pb2.GenerateResponse, None]:
        call = self._generation.Generate(request, timeout=timeout, metadata=(("x-request-id", request_id),))
        try:
            async for response in call:
                yield response
        finally:
            call.cancel()  # no-op when the call already finished; aborts the request when the consumer left

    async def list_models(self) -> list[model_pb2.ModelInfo]:
        response = await self._models.ListModels(model_pb2.ListModelsRequest())
        return list(response.models)

    async def get_model_info(self, model: str) -> model_pb2.ModelInfo:
        response = await self._models.GetModelInfo(model_pb2.GetModelInfoRequest(model=model))
        return response.model

    async def health(self, timeout: float | None) -> bool:
        """True when the generation service reports SERVING (model loaded, loop stepping, not draining)."""
        try:
            response = await self._health.Check(health_pb2.HealthCheckRequest(service=READY_SERVICE), timeout=timeout)
        except grpc.aio.AioRpcError:
            return False
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)
