"""Thin async client over the gRPC stubs, and the channel it runs on (balancing, health checking, TLS).

Tests substitute any object with the protocol's methods."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Protocol

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from http_bridge.settings import BridgeSettings
from inference_service.api.v1 import generation_pb2, generation_pb2_grpc, model_pb2, model_pb2_grpc

READY_SERVICE = "inference_service.api.v1.GenerationService"

CHANNEL_OPTIONS: list[tuple[str, str | int]] = [
    ("grpc.keepalive_time_ms", 30_000),  # the service accepts pings down to its --keepalive-min-ping-interval-s
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.ping_timeout_ms", 10_000),  # what grpcio 1.85 times a keepalive ping out by (default 60 s)
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    # A replica that comes back is reconnected within ~1 s (gRPC's default backoff grows to 120 s).
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 1_000),
]


def service_config(load_balancing: str, health_check: bool) -> str:
    """The channel's service config: the balancing policy over resolved addresses and, with health_check, gRPC
    client-side health checking (each subchannel watches grpc.health.v1 for READY_SERVICE; only SERVING ones
    are picked; a failed connection is never picked either)."""
    config: dict[str, object] = {"loadBalancingConfig": [{load_balancing: {}}]}
    if health_check:
        config["healthCheckConfig"] = {"serviceName": READY_SERVICE}
    return json.dumps(config)


def channel_credentials(settings: BridgeSettings) -> grpc.ChannelCredentials | None:
    """TLS credentials (None = plaintext); with a client certificate the bridge can pass mutual TLS."""
    if not settings.tls_enabled:
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=_read(settings.tls_ca_file),
        private_key=_read(settings.tls_key_file),
        certificate_chain=_read(settings.tls_cert_file),
    )


def _read(path: Path | None) -> bytes | None:
    return path.read_bytes() if path is not None else None


def open_channel(target: str, settings: BridgeSettings) -> grpc.aio.Channel:
    """One grpc.aio channel to `target` (host:port or a gRPC URI that may resolve to several replicas)."""
    config = service_config(settings.load_balancing, settings.health_check)
    options = [*CHANNEL_OPTIONS, ("grpc.service_config", config)]
    credentials = channel_credentials(settings)
    if credentials is None:
        return grpc.aio.insecure_channel(target, options=options)
    if settings.tls_server_name:
        options.append(("grpc.ssl_target_name_override", settings.tls_server_name))
    return grpc.aio.secure_channel(target, credentials, options=options)


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
