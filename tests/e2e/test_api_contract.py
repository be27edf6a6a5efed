"""Typed errors of the official Python SDK (auth on and off) and the published OpenAPI schema, on the real stack."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.e2e.conftest import MODEL_ID, AuthBridge, Stack
from tests.http_bridge.openapi_check import sse_data, validate

pytestmark = pytest.mark.e2e
FRANCE: list[Any] = [{"role": "user", "content": "What is the capital of France?"}]


def sdk(base_url: str, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key=key, max_retries=0, timeout=120)


def test_typed_errors(stack: Stack) -> None:
    client = sdk(stack.base_url)
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=MODEL_ID, messages=FRANCE, top_logprobs=30, logprobs=True)
    assert (bad.value.status_code, bad.value.param) == (400, "top_logprobs")
    with pytest.raises(openai.BadRequestError) as bad:
        client.completions.create(model=MODEL_ID, prompt="x", suffix="y")
    assert bad.value.code == "unsupported_parameter"
    with pytest.raises(openai.NotFoundError) as missing:
        client.completions.create(model="no-such-model", prompt="x")
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("org/no-such-model")


def test_authentication(auth_bridge: AuthBridge) -> None:
    for key in ("sk-ortserve-wrong", auth_bridge.key[:-1]):
        with pytest.raises(openai.AuthenticationError) as denied:
            sdk(auth_bridge.base_url, key).models.list()
        assert denied.value.code == "invalid_api_key"
        assert key not in str(denied.value)
    for headers in ({}, {"authorization": "Token abc"}, {"authorization": "Bearer"}):
        raw = httpx.post(
            f"{auth_bridge.base_url}/v1/completions", json={"model": MODEL_ID, "prompt": "x"}, headers=headers
        )
        assert raw.status_code == 401 and raw.json()["error"]["type"] == "authentication_error"
    assert httpx.get(f"{auth_bridge.base_url}/health/ready").status_code == 200
    client = sdk(auth_bridge.base_url, auth_bridge.key)
    assert [m.id for m in client.models.list()] == [MODEL_ID]
    reply = client.chat.completions.create(model=MODEL_ID, messages=FRANCE, temperature=0, max_tokens=8)
    assert "Paris" in (reply.choices[0].message.content or "")
    assert auth_bridge.key not in auth_bridge.process.log.read_text()


def test_real_responses_match_the_published_schema(stack: Stack) -> None:
    base = stack.base_url
    openapi = httpx.get(f"{base}/openapi.json").json()
    chat = {"model": MODEL_ID, "messages": FRANCE, "max_tokens": 6, "n": 2, "logprobs": True, "top_logprobs": 2}
    validate(openapi, "ChatCompletionRequest", chat)
    validate(openapi, "ChatCompletion", httpx.post(f"{base}/v1/chat/completions", json=chat, timeout=60).json())
    stream = {"stream": True, "stream_options": {"include_usage": True}}
    body = httpx.post(f"{base}/v1/chat/completions", json={**chat, **stream}, timeout=60).text
    for chunk in sse_data(body):
        validate(openapi, "ChatCompletionChunk", chunk)
    text = {"model": MODEL_ID, "prompt": ["Hello", "Bye"], "max_tokens": 4, "logprobs": 2}
    validate(openapi, "CompletionRequest", text)
    validate(openapi, "TextCompletion", httpx.post(f"{base}/v1/completions", json=text, timeout=60).json())
    for chunk in sse_data(httpx.post(f"{base}/v1/completions", json={**text, **stream}, timeout=60).text):
        validate(openapi, "TextCompletion", chunk)
    validate(openapi, "ModelList", httpx.get(f"{base}/v1/models").json())
    validate(openapi, "Model", httpx.get(f"{base}/v1/models/{MODEL_ID}").json())
    validate(openapi, "ErrorResponse", httpx.get(f"{base}/v1/models/nope").json())
    too_long = {"model": MODEL_ID, "prompt": "hello " * 5000}
    validate(openapi, "ErrorResponse", httpx.post(f"{base}/v1/completions", json=too_long, timeout=60).json())
