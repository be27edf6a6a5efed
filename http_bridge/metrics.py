"""Prometheus metrics of the bridge (served at GET /metrics): HTTP requests, and generation timings seen by clients.

HTTP-level series come from middleware.py's MetricsMiddleware; generation-level ones from upstream/metered_client.py,
which watches each Generate stream (one SSE chunk goes out per message, so its timings are the client's, give or
take the framing).
"""

from __future__ import annotations

from contextvars import ContextVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
ITL_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0)

# When the current HTTP request arrived (perf_counter; set by middleware.py); TTFT is measured from it.
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
