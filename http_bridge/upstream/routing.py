"""Model → inference target routing: one channel per distinct target, one client that dispatches by model.

Without routes every model goes to `inference_target` (the service answers NOT_FOUND for names it does not serve).
With routes only the routed models exist: any other is a 404 before anything is called.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, Mapping

import grpc

from http_bridge.errors import BridgeError
from http_bridge.settings import BridgeSettings
from http_bridge.upstream.client import InferenceClient, InferenceClientProtocol, open_channel
from inference_service.api.v1 import generation_pb2, model_pb2

logger = logging.getLogger(__name__)


class ModelNotFoundError(BridgeError):
    def __init__(self, model: str) -> None:
        super().__init__(
            f"The model '{model}' does not exist or you do not have access to it.",
            status=404,
            type="invalid_request_error",
            code="model_not_found",
            param="model",
        )


class RoutesError(ValueError):
    """The routes configuration is unusable (raised at start)."""


def load_routes(settings: BridgeSettings) -> dict[str, str]:
    """model_routes_file (a JSON object) overlaid with model_routes; empty = no routing."""
    routes: dict[str, object] = {}
    if settings.model_routes_file is not None:
        try:
            loaded = json.loads(settings.model_routes_file.read_text())
        except (OSError, ValueError) as exc:
            raise RoutesError(f"cannot read model routes from {settings.model_routes_file}: {exc}") from None
        if not isinstance(loaded, dict):
            raise RoutesError(f"{settings.model_routes_file}: expected a JSON object of model id → target")
        routes.update(loaded)
    routes.update(settings.model_routes)
    for model, target in routes.items():
        if not model or not isinstance(target, str) or not target.strip():
            raise RoutesError(f"model route {model!r}: the target must be a non-empty string, got {target!r}")
    return {model: str(target).strip() for model, target in routes.items()}


class RoutingClient:
    """An InferenceClientProtocol over several targets, each served by its own client (one channel)."""

    def __init__(
        self,
        clients: Mapping[str, InferenceClientProtocol],
        routes: Mapping[str, str],
        default_target: str | None = None,
    ) -> None:
        assert bool(routes) != (default_target is not None), "routes or a default target, not both"
        assert set(routes.values()) | {default_target} - {None} <= set(clients), "a target without a client"
        self.clients = dict(clients)
        self.routes = dict(routes)
        self.default_target = default_target
        self._channels: list[grpc.aio.Channel] = []

    @classmethod
    def open(cls, settings: BridgeSettings) -> RoutingClient:
        """One channel per distinct target string; close them with aclose()."""
        routes = load_routes(settings)
        targets = sorted(set(routes.values())) if routes else [settings.inference_target]
        channels = {target: open_channel(target, settings) for target in targets}
        default = None if routes else settings.inference_target
        client = cls({t: InferenceClient(c) for t, c in channels.items()}, routes, default)
        client._channels = list(channels.values())
        return client

    async def aclose(self) -> None:
        await asyncio.gather(*(channel.close() for channel in self._channels))

    def describe(self) -> str:
        if self.default_target is not None:
            return f"every model → {self.default_target}"
        return ", ".join(f"{model} → {target}" for model, target in sorted(self.routes.items()))

    def client_for(self, model: str) -> InferenceClientProtocol:
        target = self.routes.get(model, self.default_target)
        if target is None:
            raise ModelNotFoundError(model)
        return self.clients[target]

    def generate(
        self, request: generation_pb2.GenerateRequest, request_id: str, timeout: float | None
    ) -> AsyncGenerator[generation_pb2.GenerateResponse, None]:
        return self.client_for(request.model).generate(request, request_id, timeout)  # no extra layer per message

    async def get_model_info(self, model: str) -> model_pb2.ModelInfo:
        return await self.client_for(model).get_model_info(model)

    async def list_models(self) -> list[model_pb2.ModelInfo]:
        """Every target's models, deduplicated by id; with routes, only the models routed to that target.

        A target that fails is left out (logged); if every target fails, the first error is raised.
        """
        if self.default_target is not None:
            return await self.clients[self.default_target].list_models()
        targets = sorted(set(self.routes.values()))
        results = await asyncio.gather(*(self.clients[t].list_models() for t in targets), return_exceptions=True)
        models: dict[str, model_pb2.ModelInfo] = {}
        errors: list[BaseException] = []
        for target, result in zip(targets, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result
                logger.warning("ListModels on %s failed: %r", target, result)
                errors.append(result)
                continue
            for info in result:
                if self.routes.get(info.id) == target:
                    models.setdefault(info.id, info)
        if errors and len(errors) == len(targets):
            raise errors[0]
        return sorted(models.values(), key=lambda info: info.id)

    async def health(self, timeout: float | None) -> bool:
        """Ready when every target (so every route) has a SERVING replica."""
        targets = sorted(set(self.routes.values())) if self.default_target is None else [self.default_target]
        return all(await asyncio.gather(*(self.clients[t].health(timeout) for t in targets)))
