"""The real InferenceClient against an in-process grpc.aio server on 127.0.0.1 (fake servicers, no model)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from http_bridge.upstream.client import READY_SERVICE, InferenceClient
from inference_service.api.v1 import generation_pb2 as pb
from inference_service.api.v1 import generation_pb2_grpc, model_pb2, model_pb2_grpc
from tests.http_bridge.fakes import complete, text

pytestmark = pytest.mark.anyio


@dataclass
class Recorder(generation_pb2_grpc.GenerationServiceServicer):
    metadata: list[dict[str, str]] = field(default_factory=list)
    deadlines: list[float | None] = field(default_factory=list)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)

    async def Generate(self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext) -> AsyncIterator:
        self.metadata.append({k: v for k, v in context.invocation_metadata() or ()})
        self.deadlines.append(context.time_remaining())
        try:
            yield text(0, request.chat.messages[0].content)
            if request.stopping.max_tokens == 1:
                yield complete(0)
                return
            await asyncio.Event().wait()  # wait until the client cancels
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


class Models(model_pb2_grpc.ModelServiceServicer):
    async def GetModelInfo(self, request, context):  # type: ignore[no-untyped-def]
        if request.model != "m":
            await context.abort(grpc.StatusCode.NOT_FOUND, "unknown model")
        return model_pb2.GetModelInfoResponse(model=model_pb2.ModelInfo(id="m", fingerprint="f"))

    async def ListModels(self, request, context):  # type: ignore[no-untyped-def]
        return model_pb2.ListModelsResponse(models=[model_pb2.ModelInfo(id="m")])


@dataclass
class Served:
    client: InferenceClient
    recorder: Recorder
    health: health.aio.HealthServicer
    target: str


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    server = grpc.aio.server()
    recorder = Recorder()
    health_servicer = health.aio.HealthServicer()
    generation_pb2_grpc.add_GenerationServiceServicer_to_server(recorder, server)
    model_pb2_grpc.add_ModelServiceServicer_to_server(Models(), server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    target = f"127.0.0.1:{port}"
    channel = grpc.aio.insecure_channel(target)
    try:
        yield Served(InferenceClient(channel), recorder, health_servicer, target)
    finally:
        await channel.close()
        await server.stop(None)


def _request(max_tokens: int) -> pb.GenerateRequest:
    chat = pb.ChatInput(messages=[pb.ChatMessage(role="user", content="hi")])
    return pb.GenerateRequest(chat=chat, stopping=pb.StoppingCriteria(max_tokens=max_tokens))


async def test_generate_sends_request_id_and_deadline(served: Served) -> None:
    client, recorder = served.client, served.recorder
    responses = [r async for r in client.generate(_request(1), "rid-7", 30)]
    assert [r.WhichOneof("kind") for r in responses] == ["chunk", "complete"]
    assert recorder.metadata[0]["x-request-id"] == "rid-7"
    assert (
        recorder.deadlines[0] is not None and 0 < recorder.deadlines[0] <= 31
    )  # grpc-timeout is encoded with rounding


async def test_closing_the_stream_cancels_the_call(served: Served) -> None:
    client, recorder = served.client, served.recorder
    stream = client.generate(_request(0), "rid-8", 30)
    first = await anext(stream)
    assert first.chunk.text == "hi"
    await stream.aclose()
    await asyncio.wait_for(recorder.cancelled.wait(), timeout=5)


async def test_models_and_not_found(served: Served) -> None:
    client = served.client
    assert [m.id for m in await client.list_models()] == ["m"]
    assert (await client.get_model_info("m")).fingerprint == "f"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.get_model_info("x")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_health_follows_serving_status(served: Served) -> None:
    client, health_servicer = served.client, served.health
    assert await client.health(2) is False  # service unknown yet
    await health_servicer.set(READY_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    assert await client.health(2) is True
    await health_servicer.set(READY_SERVICE, health_pb2.HealthCheckResponse.NOT_SERVING)
    assert await client.health(2) is False


async def test_health_false_when_unreachable() -> None:
    async with grpc.aio.insecure_channel("127.0.0.1:1") as channel:
        assert await InferenceClient(channel).health(0.5) is False


async def test_app_lifespan_opens_one_channel_to_the_target(served: Served) -> None:
    import httpx

    from http_bridge.app import create_app
    from http_bridge.settings import BridgeSettings

    health_servicer = served.health
    await health_servicer.set(READY_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    app = create_app(BridgeSettings(_env_file=None, inference_target=served.target))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as http:
            assert (await http.get("/health/ready")).status_code == 200
            body = {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "echo"}]}
            response = await http.post("/v1/chat/completions", json=body)
            assert response.status_code == 200, response.text
            assert response.json()["choices"][0]["message"]["content"] == "echo"
            assert response.json()["system_fingerprint"] == "fp_f"
            response = await http.post("/v1/chat/completions", json={**body, "stream": True})
            assert response.text.endswith("data: [DONE]\n\n")
            assert (await http.get("/v1/models/x")).status_code == 404
