"""The grpc.aio server: services, health, reflection, graceful shutdown on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
import time

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from inference_service.api.v1 import generation_pb2, generation_pb2_grpc, model_pb2, model_pb2_grpc
from inference_service.engine.loader import ServedModel
from inference_service.server.metrics import ServiceMetrics
from inference_service.server.servicer import GenerationServicer, ModelServicer
from inference_service.server.settings import ServiceSettings

logger = logging.getLogger(__name__)

SERVICE_NAMES = (
    generation_pb2.DESCRIPTOR.services_by_name["GenerationService"].full_name,
    model_pb2.DESCRIPTOR.services_by_name["ModelService"].full_name,
)
STALL_SECONDS = 30.0  # an engine loop silent this long while it has work is reported NOT_SERVING
MAX_MESSAGE_BYTES = 64 * 2**20


class ListenError(Exception):
    """The service cannot listen on an address: another process has it, or it is not an address of this host."""


def check_listen(host: str, port: int) -> None:
    """Raise ListenError unless `host:port` can be bound the way the servers bind it (SO_REUSEADDR, no SO_REUSEPORT):
    asked before a model loads, so that a taken port fails in a second, not after the load. A name that resolves to
    several addresses (localhost) needs one that binds and none in use; port 0 is any free one."""
    if port == 0:
        return
    bound, errors = 0, list[OSError]()
    try:
        addresses = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as e:  # a name that does not resolve
        addresses, errors = [], [e]
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
                bound += 1
            except OSError as e:
                errors.append(e)
    in_use = [e for e in errors if e.errno == errno.EADDRINUSE]
    if in_use or not bound:
        error = (in_use or errors)[0]
        raise ListenError(f"cannot listen on {host}:{port}: {error.strerror or error}")


class InferenceServer:
    """Owns the grpc.aio server; build it inside the running event loop (grpc.aio binds to it)."""

    def __init__(self, settings: ServiceSettings, models: dict[str, ServedModel]) -> None:
        self.settings = settings
        self.models = models
        self.metrics = ServiceMetrics(models)
        self.health = health.aio.HealthServicer()
        options: list[tuple[str, int]] = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            # gRPC's default (on) lets a second service bind a port in use and silently take half its connections.
            ("grpc.so_reuseport", 0),
            # gRPC's defaults (one ping per 5 min without data, none without calls) answer a client's keepalive
            # pings on an idle connection, such as the bridge's health watch, with GOAWAY too_many_pings after the
            # third, failing the next call with UNAVAILABLE.
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", int(settings.keepalive_min_ping_interval_s * 1000)),
            # and the service's own pings: a client gone without closing its connection frees its sequences.
            # grpcio 1.85 times a keepalive ping out after ping_timeout_ms (60 s by default), not keepalive_timeout_ms.
            ("grpc.keepalive_time_ms", int(settings.keepalive_time_s * 1000)),
            ("grpc.keepalive_timeout_ms", int(settings.keepalive_timeout_s * 1000)),
            ("grpc.http2.ping_timeout_ms", int(settings.keepalive_timeout_s * 1000)),
        ]
        if settings.max_connection_age_s > 0:  # clients re-resolve their dns:/// target when a connection ends
            options += [
                ("grpc.max_connection_age_ms", int(settings.max_connection_age_s * 1000)),
                ("grpc.max_connection_age_grace_ms", int(settings.max_connection_age_grace_s * 1000)),
            ]
        self.server = grpc.aio.server(options=options)
        generation_pb2_grpc.add_GenerationServiceServicer_to_server(
            GenerationServicer(models, self.metrics), self.server
        )
        model_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(models), self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection((*SERVICE_NAMES, reflection.SERVICE_NAME, health.SERVICE_NAME), self.server)
        address = f"{settings.host}:{settings.port}"
        credentials = server_credentials(settings)
        try:
            if credentials is None:
                self.port = self.server.add_insecure_port(address)
            else:
                self.port = self.server.add_secure_port(address, credentials)
        except RuntimeError:  # gRPC says only "Failed to bind to address"
            raise ListenError(f"cannot listen on {address}: in use, or not an address of this host") from None
        self._draining = False

    async def _set_health(self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType) -> None:
        for name in SERVICE_NAMES:
            await self.health.set(name, status)

    def _ready(self) -> bool:
        now = time.monotonic()
        return not self._draining and all(
            m.engine.is_alive and not m.engine.load().stalled(now, STALL_SECONDS) for m in self.models.values()
        )

    async def _watch(self) -> None:
        serving = health_pb2.HealthCheckResponse.SERVING
        not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
        while True:
            await self._set_health(serving if self._ready() else not_serving)
            await asyncio.sleep(0.5)

    async def drain(self) -> None:
        """Report NOT_SERVING, refuse new requests, let in-flight ones finish within the grace period."""
        grace = self.settings.shutdown_grace_s
        logger.info(
            "draining: up to %.0f s for %d in-flight requests",
            grace,
            sum(m.engine.in_flight for m in self.models.values()),
        )
        self._draining = True
        for model in self.models.values():
            model.engine.accepting = False
        await self.health.enter_graceful_shutdown()
        deadline = time.monotonic() + grace
        while any(m.engine.in_flight for m in self.models.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        left = sum(m.engine.in_flight for m in self.models.values())
        if left:
            logger.warning("grace period over: cancelling %d requests", left)

    async def run(self) -> None:
        host, metrics_port = self.settings.host, self.settings.metrics_port
        if metrics_port:
            try:
                self.metrics.serve(host, metrics_port)
            except OSError as e:
                raise ListenError(f"cannot listen on {host}:{metrics_port} (metrics): {e.strerror or e}") from None
            logger.info("metrics on http://%s:%d/metrics", host, metrics_port)
        for model in self.models.values():
            model.engine.start()
        await self.server.start()
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        watcher = asyncio.create_task(self._watch())
        logger.info(
            "serving %s on %s:%d (%s)", sorted(self.models), self.settings.host, self.port, _transport(self.settings)
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await self.drain()
        await self.server.stop(1.0)
        for model in self.models.values():
            await model.engine.stop()
        logger.info("stopped")


def server_credentials(settings: ServiceSettings) -> grpc.ServerCredentials | None:
    """TLS credentials from the settings (None = plaintext); a client CA makes client certificates mandatory."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    client_ca = settings.tls_client_ca_file.read_bytes() if settings.tls_client_ca_file is not None else None
    return grpc.ssl_server_credentials(
        [(settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes())],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


def _transport(settings: ServiceSettings) -> str:
    if settings.tls_cert_file is None:
        return "plaintext"
    return "mutual TLS" if settings.tls_client_ca_file is not None else "TLS"


async def serve(settings: ServiceSettings, models: dict[str, ServedModel]) -> None:
    await InferenceServer(settings, models).run()
