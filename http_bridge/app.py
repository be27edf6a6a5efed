"""The FastAPI application factory; the lifespan owns the one gRPC channel to the inference service."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
from fastapi import FastAPI

from http_bridge.client import InferenceClient, InferenceClientProtocol
from http_bridge.errors import register_exception_handlers
from http_bridge.fingerprints import FingerprintCache
from http_bridge.keys import KeyStore
from http_bridge.middleware import RequestContextMiddleware
from http_bridge.openapi import build_openapi
from http_bridge.routers import chat, completions, health, models
from http_bridge.settings import BridgeSettings

logger = logging.getLogger(__name__)

_CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]


def create_app(settings: BridgeSettings | None = None, client: InferenceClientProtocol | None = None) -> FastAPI:
    """Build the bridge app. With `client` given (tests) no channel is opened; the lifespan is optional."""
    settings = settings or BridgeSettings()
    keys = KeyStore.build(settings.api_keys, settings.api_keys_file)  # a bad keys file fails here, at start

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if keys.enabled:
            logger.info("API key authentication is on (%d keys)", len(keys.hashes))
        else:
            logger.warning(
                "API key authentication is off: set ORTSERVE_BRIDGE_API_KEYS_FILE (--api-keys-file) "
                "or ORTSERVE_BRIDGE_API_KEYS to turn it on"
            )
        if client is not None:
            yield
            return
        channel = grpc.aio.insecure_channel(settings.inference_target, options=_CHANNEL_OPTIONS)
        app.state.client = InferenceClient(channel)
        logger.info("inference service target: %s", settings.inference_target)
        try:
            yield
        finally:
            await channel.close()

    app = FastAPI(title="ortserve HTTP bridge", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.client = client
    app.state.fingerprints = FingerprintCache()
    app.state.keys = keys
    register_exception_handlers(app)
    app.add_middleware(RequestContextMiddleware)
    app.include_router(health.router)
    app.include_router(models.router)
    app.include_router(chat.router)
    app.include_router(completions.router)
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
    return app
