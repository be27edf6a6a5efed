"""The FastAPI application factory; the lifespan owns the gRPC channels (one per inference target)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from http_bridge.accounts.accounting import Accounting
from http_bridge.accounts.failover_counters import FailoverCounters, StoreMetrics, open_redis
from http_bridge.accounts.key_ring import KeyRing
from http_bridge.errors import register_exception_handlers
from http_bridge.metrics import BridgeMetrics
from http_bridge.middleware import add_middlewares
from http_bridge.openapi import build_openapi
from http_bridge.routers import health, playground, public
from http_bridge.routers import metrics as metrics_router
from http_bridge.settings import BridgeSettings
from http_bridge.upstream.client import InferenceClientProtocol
from http_bridge.upstream.fingerprints import FingerprintCache
from http_bridge.upstream.metered_client import MeteredClient
from http_bridge.upstream.routing import RoutingClient

logger = logging.getLogger(__name__)


def create_app(settings: BridgeSettings | None = None, client: InferenceClientProtocol | None = None) -> FastAPI:
    """Build the bridge app. With `client` given (tests) no channel is opened; the lifespan is optional."""
    settings = settings or BridgeSettings()
    # a bad keys file fails here, at start
    keys = KeyRing(settings.api_keys, settings.api_keys_file, settings.keys_reload_interval_s)
    metrics = BridgeMetrics()
    redis = open_redis(settings.redis_url, settings.redis_timeout_s) if settings.redis_url else None
    counters = FailoverCounters(redis, settings.redis_timeout_s, settings.redis_retry_s, StoreMetrics(metrics.registry))
    accounting = Accounting(counters, settings.rate_limit_window_s, metrics.registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if keys.store.enabled:
            logger.info("API key authentication is on (%d keys)", len(keys.store.records))
        else:
            logger.warning(
                "API key authentication is off: set ORTSERVE_BRIDGE_API_KEYS_FILE (--api-keys-file) "
                "or ORTSERVE_BRIDGE_API_KEYS to turn it on"
            )
        logger.info("per-key rate limits and usage: %s", counters.describe())
        try:
            async with _serving(app):
                yield
        finally:
            await accounting.aclose()

    @asynccontextmanager
    async def _serving(app: FastAPI) -> AsyncIterator[None]:
        if client is not None:
            yield
            return
        routing = RoutingClient.open(settings)
        app.state.client = MeteredClient(routing, metrics)
        logger.info(
            "inference targets: %s (%s%s%s)",
            routing.describe(),
            settings.load_balancing,
            ", health-checked" if settings.health_check else "",
            ", TLS" if settings.tls_enabled else "",
        )
        try:
            yield
        finally:
            await routing.aclose()

    app = FastAPI(title="ortserve HTTP bridge", version="0.1.0", lifespan=lifespan)
    # what deps.py resolves for the routes
    app.state.settings = settings
    app.state.client = MeteredClient(client, metrics) if client is not None else None
    app.state.metrics = metrics
    app.state.fingerprints = FingerprintCache()
    app.state.keys = keys
    app.state.accounting = accounting
    register_exception_handlers(app)
    add_middlewares(app, settings, metrics, accounting)
    app.include_router(health.router)
    app.include_router(metrics_router.router)
    public.include(app)
    app.include_router(playground.router)
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
    return app
