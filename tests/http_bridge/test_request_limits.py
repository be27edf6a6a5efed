"""Request limits, CORS and request-id hygiene of the bridge: each limit sent wrong gets a 4xx in the OpenAI shape,
and the app keeps serving afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from http_bridge.app import create_app
from http_bridge.settings import BridgeSettings
from tests.http_bridge.fakes import FakeClient

pytestmark = pytest.mark.anyio

CHAT: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
TEXT: dict[str, Any] = {"model": "m", "prompt": "hi"}
SMALL = BridgeSettings(
    _env_file=None,
    max_body_bytes=2048,
    max_messages=3,
    max_message_chars=100,
    max_stop_sequences=2,
    max_stop_chars=5,
    max_choices=4,
)


@pytest.fixture
async def small(fake: FakeClient) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(SMALL, client=fake))
    async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as client:
        yield client


def assert_openai_error(response: httpx.Response, status: int, param: str | None, code: str | None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)


USER = {"role": "user", "content": "hi"}


@pytest.mark.parametrize(
    ("path", "body", "param", "code"),
    [
        ("/v1/chat/completions", {**CHAT, "messages": [USER] * 4}, "messages", "array_above_max_length"),
        (
            "/v1/chat/completions",
            {**CHAT, "messages": [USER, {"role": "user", "content": "x" * 101}]},
            "messages[1].content",
            "string_above_max_length",
        ),
        (
            "/v1/chat/completions",
            {**CHAT, "messages": [{"role": "user", "content": [{"type": "text", "text": "x" * 60}] * 2}]},
            "messages[0].content",
            "string_above_max_length",
        ),
        ("/v1/chat/completions", {**CHAT, "stop": ["a", "b", "c"]}, "stop", "array_above_max_length"),
        ("/v1/chat/completions", {**CHAT, "stop": "toolong"}, "stop[0]", "string_above_max_length"),
        ("/v1/chat/completions", {**CHAT, "n": 5}, "n", None),
        ("/v1/completions", {**TEXT, "prompt": "x" * 101}, "prompt", "string_above_max_length"),
        ("/v1/completions", {**TEXT, "prompt": ["ok", "x" * 101]}, "prompt[1]", "string_above_max_length"),
        ("/v1/completions", {**TEXT, "prompt": ["a", "b", "c"], "n": 2}, "n", None),
        ("/v1/completions", {**TEXT, "stop": ["a", "b", "c"]}, "stop", "array_above_max_length"),
    ],
)
async def test_limit_exceeded_is_400_and_nothing_is_generated(
    small: httpx.AsyncClient, fake: FakeClient, path: str, body: dict[str, Any], param: str, code: str | None
) -> None:
    assert_openai_error(await small.post(path, json=body), 400, param, code)
    assert fake.requests == []  # refused before any Generate call
    assert (await small.post(path, json=CHAT if "chat" in path else TEXT)).status_code == 200


async def test_at_the_limits_is_accepted(small: httpx.AsyncClient) -> None:
    body = {**CHAT, "messages": [{"role": "user", "content": "x" * 100}] * 3, "stop": ["abcde", "z"], "n": 4}
    assert (await small.post("/v1/chat/completions", json=body)).status_code == 200
    assert (await small.post("/v1/completions", json={**TEXT, "prompt": ["a", "b"], "n": 2})).status_code == 200


async def test_body_over_the_limit_is_413_from_content_length(small: httpx.AsyncClient, fake: FakeClient) -> None:
    body = {**CHAT, "messages": [{"role": "user", "content": "x" * 3000}]}
    response = await small.post("/v1/chat/completions", json=body)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert response.headers["x-request-id"]
    assert fake.requests == []
    assert (await small.post("/v1/chat/completions", json=CHAT)).status_code == 200


async def test_chunked_body_over_the_limit_is_413(small: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: Transfer-Encoding chunked
        yield b'{"model": "m", "messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"x" * 500
        yield b'"}]}'

    response = await small.post("/v1/chat/completions", content=chunks())
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


async def test_chunked_body_under_the_limit_is_served(small: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"model": "m", "messages": '
        yield b'[{"role": "user", "content": "hi"}]}'

    response = await small.post("/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text


async def test_default_limits_are_documented_values() -> None:
    settings = BridgeSettings(_env_file=None)
    assert settings.max_body_bytes == 4 * 1024 * 1024
    assert (settings.max_messages, settings.max_message_chars) == (256, 131_072)
    assert (settings.max_stop_sequences, settings.max_stop_chars, settings.max_choices) == (4, 256, 128)
    assert settings.cors_allow_origins == []


async def test_cors_is_off_by_default(http: httpx.AsyncClient) -> None:
    headers = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    preflight = await http.options("/v1/chat/completions", headers=headers)
    assert "access-control-allow-origin" not in preflight.headers
    response = await http.get("/v1/models", headers={"Origin": "https://evil.example"})
    assert response.status_code == 200 and "access-control-allow-origin" not in response.headers


async def test_cors_allow_list(fake: FakeClient) -> None:
    settings = BridgeSettings(_env_file=None, cors_allow_origins="https://app.example, https://b.example")
    assert settings.cors_allow_origins == ["https://app.example", "https://b.example"]
    transport = httpx.ASGITransport(app=create_app(settings, client=fake))
    async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as client:
        allowed = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
        preflight = await client.options(
            "/v1/chat/completions", headers={**allowed, "Access-Control-Request-Headers": "authorization"}
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        response = await client.post("/v1/chat/completions", json=CHAT, headers={"Origin": "https://app.example"})
        assert response.headers["access-control-allow-origin"] == "https://app.example"
        assert "x-request-id" in response.headers["access-control-expose-headers"].lower()
        other = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
        refused = await client.options("/v1/chat/completions", headers=other)
        assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers
        simple = await client.get("/v1/models", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in simple.headers


@pytest.mark.parametrize("given", ["abc\r\nX-Injected: yes", "a" * 500, "id with spaces", '{"level": "ERROR"}', ""])
async def test_unsafe_request_id_is_replaced_never_echoed(
    http: httpx.AsyncClient, fake: FakeClient, given: str
) -> None:
    # httpx refuses CR/LF in header values, so that one goes in as raw bytes through the ASGI scope.
    response = await http.post("/v1/chat/completions", json=CHAT, headers=[(b"x-request-id", given.encode())])
    chosen = response.headers["x-request-id"]
    assert chosen != given and len(chosen) == 32 and chosen.isalnum()
    assert fake.requests[0][1] == chosen and fake.requests[0][0].request_id == chosen
    assert given not in response.text or not given


async def test_safe_request_id_is_kept(http: httpx.AsyncClient, fake: FakeClient) -> None:
    response = await http.post("/v1/chat/completions", json=CHAT, headers={"x-request-id": "client-42.a_b"})
    assert response.headers["x-request-id"] == "client-42.a_b"
    assert fake.requests[0][1] == "client-42.a_b"
