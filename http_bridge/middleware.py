"""Every middleware of the bridge (pure ASGI), added by `add_middlewares` in their order:

- CORS for browsers on other origins: off unless BridgeSettings.cors_allow_origins lists some (or `*`);
- the request id (context var + x-request-id response header) and last-resort 500s;
- Prometheus HTTP metrics: requests by route template and status, durations, in flight (metrics.py);
- the body size limit (413 before the body is read or parsed; the other request limits: request_limits.py);
- the key's x-ratelimit-* headers on every response (accounts/rate_limits.py).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette._utils import get_route_path
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from http_bridge.accounts.accounting import Accounting
from http_bridge.accounts.rate_limits import KeyWindow, key_window_var
from http_bridge.errors import internal_error
from http_bridge.metrics import BridgeMetrics, request_started_var
from http_bridge.request_limits import BodyTooLargeError
from http_bridge.settings import BridgeSettings
from ortserve_common.request_context import choose_request_id, request_id_var

logger = logging.getLogger(__name__)

UNMATCHED_ROUTE = "unmatched"  # 404s for unknown paths share one label value (no cardinality from scanners)


def add_middlewares(app: FastAPI, settings: BridgeSettings, metrics: BridgeMetrics, accounting: Accounting) -> None:
    """Every middleware of the bridge, outermost first: CORS, request id, metrics, body size, rate-limit headers."""
    # add_middleware puts each one outside those added before it, so they are added innermost first
    app.add_middleware(RateLimitHeadersMiddleware, accounting=accounting)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(RequestContextMiddleware)
    if settings.cors_allow_origins:  # outermost, so that errors and preflights carry the CORS headers too
        app.add_middleware(CORSMiddleware, **cors_options(settings.cors_allow_origins))


def cors_options(origins: list[str]) -> dict[str, Any]:
    """Starlette CORSMiddleware options: the OpenAI API's methods and headers, no cookies (keys are Bearer headers)."""
    return {
        "allow_origins": origins,
        "allow_methods": ["GET", "POST"],
        "allow_headers": ["authorization", "content-type", "x-request-id"],
        "expose_headers": ["x-request-id", "retry-after"],
        "allow_credentials": False,
        "max_age": 600,
    }


class RequestContextMiddleware:
    """The request id (context var + x-request-id response header) and last-resort 500s."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = choose_request_id(Headers(scope=scope).get("x-request-id"))
        token = request_id_var.set(request_id)
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                MutableHeaders(scope=message)["x-request-id"] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            logger.exception("unhandled error")
            if started:
                raise
            await self._send_internal_error(send_with_id)
        finally:
            request_id_var.reset(token)

    @staticmethod
    async def _send_internal_error(send: Send) -> None:
        error = internal_error()
        body = error.body().model_dump_json().encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": error.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


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


class BodySizeLimitMiddleware:
    """413 for bodies over `max_bytes`: at once from Content-Length, else counted while buffering a chunked body."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length")
        if length is not None:
            if not length.isdigit() or int(length) > self.max_bytes:
                await self._refuse(send)
                return
            await self.app(scope, receive, send)  # the server delivers at most Content-Length bytes
            return
        chunks, size = [], 0
        while True:  # chunked: read it all (the app would anyway), stop counting past the limit
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message], receive), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        whole: Message = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([whole], receive), send)

    async def _refuse(self, send: Send) -> None:
        body = BodyTooLargeError(self.max_bytes).body().model_dump_json().encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),  # the unread rest of the body must not be parsed as a next request
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _replay(messages: list[Message], receive: Receive) -> Receive:
    async def replayed() -> Message:
        if messages:
            return messages.pop(0)
        return await receive()

    return replayed


class RateLimitHeadersMiddleware:
    """Puts the key's x-ratelimit-* headers on every response: the admission's snapshot, else a fresh read."""

    def __init__(self, app: ASGIApp, accounting: Accounting) -> None:
        self.app = app
        self.accounting = accounting

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        window = KeyWindow()  # filled by authentication (deps.py) and admission (accounts/accounting.py)
        token = key_window_var.set(window)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                snapshot = window.snapshot
                if snapshot is None and window.key is not None:
                    snapshot = await self.accounting.peek(window.key)
                if snapshot is not None:
                    headers = MutableHeaders(scope=message)
                    for name, value in snapshot.headers().items():
                        headers[name] = value
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            key_window_var.reset(token)
