"""The published OpenAPI document describes the endpoints, and real responses validate against it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.http_bridge.fakes import MODEL_ID, FakeClient, hello, text
from tests.http_bridge.openapi_check import is_valid, sse_data, validate

pytestmark = pytest.mark.anyio

CHAT: dict[str, Any] = {"model": MODEL_ID, "messages": [{"role": "user", "content": "hi"}]}
TEXT: dict[str, Any] = {"model": MODEL_ID, "prompt": "hi"}


@pytest.fixture
async def openapi(http: httpx.AsyncClient) -> dict[str, Any]:
    response = await http.get("/openapi.json")
    assert response.status_code == 200
    return dict(response.json())


def operation(openapi: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    return dict(openapi["paths"][path][method])


def ref(openapi: dict[str, Any], path: str, method: str, status: str, media: str) -> str:
    schema = operation(openapi, path, method)["responses"][status]["content"][media]["schema"]
    return str(schema["$ref"]).rsplit("/", 1)[-1]


async def test_paths_and_models(openapi: dict[str, Any]) -> None:
    assert {"/v1/chat/completions", "/v1/completions", "/v1/models", "/v1/models/{model_id}"} <= set(openapi["paths"])
    for path, request, response, chunk in [
        ("/v1/chat/completions", "ChatCompletionRequest", "ChatCompletion", "ChatCompletionChunk"),
        ("/v1/completions", "CompletionRequest", "TextCompletion", "TextCompletion"),
    ]:
        body = operation(openapi, path, "post")["requestBody"]["content"]["application/json"]["schema"]
        assert body["$ref"].endswith(f"/{request}")
        assert ref(openapi, path, "post", "200", "application/json") == response
        assert ref(openapi, path, "post", "200", "text/event-stream") == chunk
        assert "422" not in operation(openapi, path, "post")["responses"]
        assert ref(openapi, path, "post", "default", "application/json") == "ErrorResponse"
    assert ref(openapi, "/v1/models", "get", "200", "application/json") == "ModelList"
    assert ref(openapi, "/v1/models/{model_id}", "get", "200", "application/json") == "Model"
    schemas = openapi["components"]["schemas"]
    assert sorted(schemas["ChatCompletionRequest"]["required"]) == ["messages", "model"]
    assert sorted(schemas["CompletionRequest"]["required"]) == ["model", "prompt"]
    assert sorted(schemas["ErrorBody"]["required"]) == ["message", "type"]
    assert "HTTPValidationError" not in schemas


@pytest.mark.parametrize(
    ("component", "body", "accepted"),
    [
        ("ChatCompletionRequest", CHAT, True),
        ("ChatCompletionRequest", {**CHAT, "stop": "x", "n": 2, "logit_bias": {"5": -100}}, True),
        (
            "ChatCompletionRequest",
            {**CHAT, "messages": [{"role": "developer", "content": [{"type": "text", "text": "a"}]}]},
            True,
        ),
        (
            "ChatCompletionRequest",
            {**CHAT, "messages": [{"role": "assistant", "content": None}, {"role": "user", "content": "x"}]},
            True,
        ),
        ("ChatCompletionRequest", {**CHAT, "temperature": 3}, False),
        ("ChatCompletionRequest", {**CHAT, "stop": ["a"] * 5}, False),
        ("ChatCompletionRequest", {**CHAT, "messages": [{"role": "tool", "content": "x"}]}, False),
        (
            "ChatCompletionRequest",
            {**CHAT, "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {}}}},
            True,
        ),
        ("ChatCompletionRequest", {**CHAT, "response_format": {"type": "xml"}}, False),
        ("ChatCompletionRequest", {**CHAT, "guided_json": '{"type": "object"}'}, True),
        ("ChatCompletionRequest", {**CHAT, "tools": [{"type": "function", "function": {"name": "a b"}}]}, False),
        ("ChatCompletionRequest", {**CHAT, "tools": [{"type": "function", "function": {"name": "f"}}]}, True),
        ("ChatCompletionRequest", {"messages": CHAT["messages"]}, False),
        ("CompletionRequest", TEXT, True),
        ("CompletionRequest", {**TEXT, "prompt": ["a", "b"], "logprobs": 5, "stream": True}, True),
        ("CompletionRequest", {**TEXT, "prompt": [1, 2]}, True),
        ("CompletionRequest", {**TEXT, "prompt": [[1], [2]]}, True),
        ("CompletionRequest", {**TEXT, "prompt": 5}, False),
        ("CompletionRequest", {**TEXT, "logprobs": 6}, False),
        ("CompletionRequest", {**TEXT, "structured_outputs": {"json": "{}"}}, True),
        ("CompletionRequest", {**TEXT, "guided_choice": "yes"}, False),
        ("CompletionRequest", {"prompt": "x"}, False),
    ],
)
async def test_schema_agrees_with_the_endpoint(
    http: httpx.AsyncClient, openapi: dict[str, Any], component: str, body: dict[str, Any], accepted: bool
) -> None:
    assert is_valid(openapi, component, body) is accepted
    path = "/v1/chat/completions" if component.startswith("Chat") else "/v1/completions"
    status = (await http.post(path, json=body)).status_code
    assert (status == 200) is accepted, status


async def test_responses_validate(http: httpx.AsyncClient, fake: FakeClient, openapi: dict[str, Any]) -> None:
    fake.script = hello(n=2)
    validate(openapi, "ChatCompletion", (await http.post("/v1/chat/completions", json={**CHAT, "n": 2})).json())
    stream = {"stream": True, "stream_options": {"include_usage": True}}
    chunks = sse_data((await http.post("/v1/chat/completions", json={**CHAT, **stream, "n": 2})).text)
    for chunk in chunks:
        validate(openapi, "ChatCompletionChunk", chunk)
    validate(openapi, "TextCompletion", (await http.post("/v1/completions", json={**TEXT, "n": 2})).json())
    for chunk in sse_data((await http.post("/v1/completions", json={**TEXT, **stream, "n": 2})).text):
        validate(openapi, "TextCompletion", chunk)
    fake.script = [text(0, "x"), *hello()[1:]]
    body = {**TEXT, "logprobs": 1}
    validate(openapi, "TextCompletion", (await http.post("/v1/completions", json=body)).json())
    validate(openapi, "ModelList", (await http.get("/v1/models")).json())
    validate(openapi, "Model", (await http.get(f"/v1/models/{MODEL_ID}")).json())
    for bad in [
        http.post("/v1/completions", json={**TEXT, "echo": True}),
        http.get("/v1/models/nope"),
        http.post("/v1/chat/completions", json={**CHAT, "n": 0}),
    ]:
        validate(openapi, "ErrorResponse", (await bad).json())
    assert not is_valid(openapi, "ChatCompletion", {"id": "x"})
