"""Prometheus metrics of the bridge (served at GET /metrics): HTTP requests, and generation timings seen by clients.

HTTP-level series come from an ASGI middleware; generation-level ones from a client wrapper that watches each
Generate stream (one SSE chunk goes out per message, so its timings are the client's, give or take the framing).
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from contextvars import ContextVar

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette._utils import get_route_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from http_bridge.client import InferenceClientProtocol
from inference_service.api.v1 import generation_pb2, model_pb2

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
ITL_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0)
UNMATCHED_ROUTE = "unmatched"  # 404s for unknown paths share one label value (no cardinality from scanners)

# When the current HTTP request arrived (perf_counter); TTFT is measured from it.
request_started_var: ContextVar[float | None] = ContextVar("request_started", default=None)


class BridgeMetrics:
    """One registry per app (no global state): tests and several apps in one process do not collide."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "ortserve_bridge_requests", "HTTP requests by route and status", ["route", "status"], registry=r
        )
        self.duration = Histogram(
            "ortserve_bridge_request_duration_seconds",
            "HTTP request arrival to the last byte of the response (whole stream for SSE)",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("ortserve_bridge_requests_in_flight", "HTTP requests being served", registry=r)
        self.ttft = Histogram(
            "ortserve_bridge_time_to_first_token_seconds",
            "HTTP request arrival to the first generated text",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.itl = Histogram(
            "ortserve_bridge_inter_token_latency_seconds",
            "Time between streamed chunks of a choice",
            ["model"],
            buckets=ITL_BUCKETS,
            registry=r,
        )
        self.prompt_tokens = Counter(
            "ortserve_bridge_prompt_tokens", "Prompt tokens (from usage)", ["model"], registry=r
        )
        self.completion_tokens = Counter(
            "ortserve_bridge_completion_tokens", "Generated tokens (from usage)", ["model"], registry=r
        )
        self.upstream_errors = Counter(
            "ortserve_bridge_upstream_errors", "Generate calls that failed, by gRPC status", ["code"], registry=r
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts every HTTP request by route template and status, with its duration and the in-flight gauge."""

    def __init__(self, app: ASGIApp, metrics: BridgeMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        token = request_started_var.set(started)
        status = 500  # unless a response starts

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_observed)
        finally:
            self.metrics.in_flight.dec()
            request_started_var.reset(token)
            route = route_label(scope)
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.duration.labels(route).observe(time.perf_counter() - started)


def route_label(scope: Scope) -> str:
    """The matched route's template with the base it was mounted under: `/v1/inference/chat/completions`.

    FastAPI puts the route as its router defines it in the scope, without the include_router prefix, and
    routers/public.py mounts one router under several bases; the base is the part of the path before the template
    matches (bounded: only the mounted bases can precede a match).
    """
    route = scope.get("route")  # FastAPI sets the matched route
    template = getattr(route, "path", None)
    regex = getattr(route, "path_regex", None)
    if not isinstance(template, str):
        return UNMATCHED_ROUTE
    if regex is None:
        return template
    path = get_route_path(scope)
    for start, char in enumerate(path):
        if char == "/" and regex.match(path[start:]):
            return path[:start] + template
    return template


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
