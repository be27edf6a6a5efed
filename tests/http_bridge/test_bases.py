"""The public API answers at the bases /v1, / and /v1/inference (routers/public.py), identically: the official
client at each base, the same 404 and 401 bodies, one OpenAPI listing, per-base metric routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import httpx2
import openai
import pytest

from http_bridge.app import create_app
from http_bridge.routers.public import BASES
from http_bridge.settings import BridgeSettings
from inference_service.api.v1 import model_pb2
from tests.http_bridge.fakes import FakeClient, hello, rpc_error, sse_payloads

pytestmark = pytest.mark.anyio

ALIAS = "llama3.1:8b-instruct-fp16"
NAMES = ["smollm2-135m-instruct", ALIAS, "org/model"]
MESSAGES: Any = [{"role": "user", "content": "Say hello"}]


@pytest.fixture
def fake() -> FakeClient:
    # A service with --served-model-name: one ModelInfo per name.
    return FakeClient(models=[model_pb2.ModelInfo(id=name, created=1, fingerprint="abc123") for name in NAMES])


@pytest.fixture(params=BASES, ids=lambda base: base or "/")
def base(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def sdk(fake: FakeClient, base: str) -> AsyncIterator[openai.AsyncOpenAI]:
    app = create_app(BridgeSettings(_env_file=None, api_keys=["k1"]), client=fake)
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://bridge") as http_client:
        yield openai.AsyncOpenAI(api_key="k1", base_url=f"http://bridge{base}", http_client=http_client, max_retries=0)


@pytest.fixture
async def secured(fake: FakeClient) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(BridgeSettings(_env_file=None, api_keys=["k1"]), client=fake)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bridge") as client:
        yield client


async def test_models_list_and_retrieve(sdk: openai.AsyncOpenAI) -> None:
    assert [model.id for model in (await sdk.models.list()).data] == NAMES
    for name in NAMES:
        assert (await sdk.models.retrieve(name)).id == name


async def test_chat_and_completions_echo_the_name_sent(sdk: openai.AsyncOpenAI, fake: FakeClient) -> None:
    chat = await sdk.chat.completions.create(model=ALIAS, messages=MESSAGES)
    assert (chat.model, chat.choices[0].message.content) == (ALIAS, "Hello")
    stream = await sdk.chat.completions.create(model="org/model", messages=MESSAGES, stream=True)
    chunks = [chunk async for chunk in stream]
    assert {chunk.model for chunk in chunks} == {"org/model"}
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello"
    text = await sdk.completions.create(model=ALIAS, prompt="Say")
    assert (text.model, text.choices[0].text) == (ALIAS, "Hello")
    assert [request.model for request, _, _ in fake.requests] == [ALIAS, "org/model", ALIAS]


async def test_unknown_model_is_the_same_404_at_every_base(secured: httpx.AsyncClient, fake: FakeClient) -> None:
    auth = {"Authorization": "Bearer k1"}
    bodies = []
    for base in BASES:
        fake.script = [rpc_error(grpc.StatusCode.NOT_FOUND, "The model 'nope' does not exist")]
        chat = await secured.post(
            f"{base}/chat/completions", headers=auth, json={"model": "nope", "messages": MESSAGES}
        )
        text = await secured.post(f"{base}/completions", headers=auth, json={"model": "nope", "prompt": "x"})
        retrieve = await secured.get(f"{base}/models/nope", headers=auth)
        assert [r.status_code for r in (chat, text, retrieve)] == [404, 404, 404]
        bodies.append([r.json() for r in (chat, text, retrieve)])
    assert bodies[0][0]["error"]["code"] == "model_not_found"
    assert all(body == bodies[0] for body in bodies)


async def test_auth_at_every_base(secured: httpx.AsyncClient) -> None:
    fake_paths = ["/models", f"/models/{ALIAS}"]
    bodies = set()
    for base in BASES:
        for path in fake_paths:
            missing = await secured.get(base + path)
            wrong = await secured.get(base + path, headers={"Authorization": "Bearer nope"})
            right = await secured.get(base + path, headers={"Authorization": "Bearer k1"})
            assert (missing.status_code, wrong.status_code, right.status_code) == (401, 401, 200)
            bodies.add(wrong.text)
        posted = await secured.post(f"{base}/chat/completions", json={"model": ALIAS, "messages": MESSAGES})
        assert posted.status_code == 401
    assert len(bodies) == 1


async def test_limits_at_every_base(secured: httpx.AsyncClient) -> None:
    auth = {"Authorization": "Bearer k1"}
    for base in BASES:
        too_many = {"model": ALIAS, "messages": MESSAGES, "stop": ["a", "b", "c", "d", "e"]}
        response = await secured.post(f"{base}/chat/completions", headers=auth, json=too_many)
        assert response.status_code == 400, base
        assert response.json()["error"]["type"] == "invalid_request_error"


async def test_raw_stream_at_every_base(secured: httpx.AsyncClient, fake: FakeClient) -> None:
    for base in BASES:
        fake.script = hello()
        body = {"model": ALIAS, "messages": MESSAGES, "stream": True}
        response = await secured.post(f"{base}/chat/completions", headers={"Authorization": "Bearer k1"}, json=body)
        assert response.status_code == 200
        assert sse_payloads(response.text)[-1] == "[DONE]"


async def test_openapi_lists_the_v1_paths_once_and_names_the_other_bases(secured: httpx.AsyncClient) -> None:
    document = (await secured.get("/openapi.json")).json()
    paths = set(document["paths"])
    assert {"/v1/models", "/v1/models/{model_id}", "/v1/chat/completions", "/v1/completions"} <= paths
    assert not {p for p in paths if p.startswith("/v1/inference") or p in ("/chat/completions", "/models")}
    assert document["info"]["x-api-bases"] == ["/v1", "", "/v1/inference"]
    assert "`/v1/inference`" in document["info"]["description"]


async def test_metrics_label_each_base_with_its_route(secured: httpx.AsyncClient) -> None:
    auth = {"Authorization": "Bearer k1"}
    for base in BASES:
        assert (await secured.get(f"{base}/models/org/model", headers=auth)).status_code == 200
    text = (await secured.get("/metrics")).text
    for route in ("/v1/models/{model_id:path}", "/models/{model_id:path}", "/v1/inference/models/{model_id:path}"):
        assert f'ortserve_bridge_requests_total{{route="{route}",status="200"}} 1.0' in text


async def test_a_model_name_with_surrounding_spaces_is_the_name(sdk: openai.AsyncOpenAI, fake: FakeClient) -> None:
    chat = await sdk.chat.completions.create(model=f" {ALIAS} ", messages=MESSAGES)
    assert chat.model == ALIAS
    assert fake.requests[-1][0].model == ALIAS
