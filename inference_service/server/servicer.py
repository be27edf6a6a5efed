"""Thin gRPC servicers: proto → engine call → proto. Engine errors become statuses in one place."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import wraps
from typing import Any, TypeVar

import grpc

from inference_service.api.v1 import generation_pb2 as gen_pb
from inference_service.api.v1 import generation_pb2_grpc as gen_grpc
from inference_service.api.v1 import model_pb2 as model_pb
from inference_service.api.v1 import model_pb2_grpc as model_grpc
from inference_service.engine.errors import EngineError, ModelNotFoundError
from inference_service.engine.loader import ServedModel
from inference_service.server import proto_convert
from inference_service.server.errors import to_status
from inference_service.server.metrics import ServiceMetrics
from ortserve_common.request_context import is_request_id, request_id_var

logger = logging.getLogger(__name__)

T = TypeVar("T")


def by_name(models: dict[str, ServedModel]) -> dict[str, ServedModel]:
    """Every name a request may carry (each model's id and aliases) → the model."""
    return {name: model for model in models.values() for name in model.names}


def _resolve(names: dict[str, ServedModel], name: str) -> ServedModel:
    """The model a request names; an empty name means the only model, when there is one."""
    models = {id(model): model for model in names.values()}
    if not name and len(models) == 1:
        return next(iter(models.values()))
    model = names.get(name)
    if model is None:
        raise ModelNotFoundError(f"The model '{name}' does not exist; served: {sorted(names)}")
    return model


def caller_request_id(context: grpc.aio.ServicerContext) -> str | None:
    """The caller's x-request-id metadata (the bridge sends the id of its HTTP request) when it follows the shared
    request-id rule; None when absent or not."""
    for key, value in context.invocation_metadata() or ():
        if key == "x-request-id" and isinstance(value, str) and is_request_id(value):
            return value
    return None


def _unary(method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    @wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> T:
        try:
            return await method(self, request, context)
        except EngineError as e:
            await context.abort_with_status(to_status(e))
            raise  # unreachable: abort raises

    return wrapper


class GenerationServicer(gen_grpc.GenerationServiceServicer):
    def __init__(self, models: dict[str, ServedModel], metrics: ServiceMetrics | None = None) -> None:
        self.models = models
        self.names = by_name(models)
        self.metrics = metrics

    def _label(self, name: str) -> str:
        """Metric label: the model's id whichever of its names was sent, never a client-chosen string."""
        if not name and len(self.models) == 1:
            return next(iter(self.models))
        model = self.names.get(name)
        return model.model_id if model is not None else "unknown"

    async def Generate(
        self, request: gen_pb.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[gen_pb.GenerateResponse]:
        tracker = self.metrics.track(self._label(request.model)) if self.metrics else None
        status = "CANCELLED"  # unless we get to the end or fail: the client went away
        try:
            caller_id = caller_request_id(context)  # on every log line of this request, else the engine's id
            request_id_var.set(caller_id or "-")
            request_id = proto_convert.request_id(request.request_id)
            request_id_var.set(caller_id or request_id)
            model = _resolve(self.names, request.model)
            params = proto_convert.generation_params(request, model.config.search)
            prompt = proto_convert.prompt_input(request)
            async for output in model.engine.generate(prompt, params, request_id):
                if tracker:
                    tracker.on_output(output, time.monotonic())
                for response in proto_convert.responses(output, request.output.return_token_ids):
                    yield response
            status = "OK"
        except EngineError as e:
            status = to_status(e).code.name
            logger.info("request failed: %s", e)
            await context.abort_with_status(to_status(e))
        finally:
            if tracker:
                tracker.finish(status)

    @_unary
    async def Tokenize(
        self, request: gen_pb.TokenizeRequest, context: grpc.aio.ServicerContext
    ) -> gen_pb.TokenizeResponse:
        model = _resolve(self.names, request.model)
        text, ids = model.engine.render(proto_convert.prompt_input(request))
        return gen_pb.TokenizeResponse(token_ids=ids, text=text)

    @_unary
    async def Abort(self, request: gen_pb.AbortRequest, context: grpc.aio.ServicerContext) -> gen_pb.AbortResponse:
        found = any(m.engine.abort(request.request_id) for m in self.models.values())
        return gen_pb.AbortResponse(found=found)


def model_info(model: ServedModel, name: str = "") -> model_pb.ModelInfo:
    """The model as `name` (one of its names; default its id): clients see the name they asked for."""
    cfg = model.config
    return model_pb.ModelInfo(
        id=name or model.model_id,
        context_length=model.engine.context_length,
        vocab_size=cfg.vocab_size,
        eos_token_ids=cfg.eos_token_ids,
        execution_provider=model.execution_provider,
        precision=model.precision,
        default_sampling=model_pb.DefaultSampling(
            temperature=cfg.search.temperature, top_p=cfg.search.top_p, top_k=cfg.search.top_k
        ),
        created=model.created,
        fingerprint=model.fingerprint,
    )


class ModelServicer(model_grpc.ModelServiceServicer):
    def __init__(self, models: dict[str, ServedModel]) -> None:
        self.models = models
        self.names = by_name(models)

    @_unary
    async def ListModels(
        self, request: model_pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> model_pb.ListModelsResponse:
        # One entry per name: OpenAI clients see every alias as a model (as vLLM's --served-model-name lists them).
        return model_pb.ListModelsResponse(models=[model_info(m, name) for name, m in self.names.items()])

    @_unary
    async def GetModelInfo(
        self, request: model_pb.GetModelInfoRequest, context: grpc.aio.ServicerContext
    ) -> model_pb.GetModelInfoResponse:
        return model_pb.GetModelInfoResponse(model=model_info(_resolve(self.names, request.model), request.model))

    @_unary
    async def GetServerLoad(
        self, request: model_pb.GetServerLoadRequest, context: grpc.aio.ServicerContext
    ) -> model_pb.GetServerLoadResponse:
        loads = [m.engine.load() for m in self.models.values()]
        return model_pb.GetServerLoadResponse(
            running_sequences=sum(x.running_sequences for x in loads),
            waiting_requests=sum(x.waiting_requests for x in loads),
            kv_tokens_used=sum(x.kv_tokens_used for x in loads),
            kv_tokens_total=sum(x.kv_tokens_total for x in loads),
            max_running_sequences=sum(x.max_running_sequences for x in loads),
            draft_tokens=sum(x.draft_tokens for x in loads),
            accepted_draft_tokens=sum(x.accepted_draft_tokens for x in loads),
        )
