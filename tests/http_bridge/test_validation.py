"""Bad requests → 400 in the OpenAI error shape (never 422), and the app keeps serving afterwards."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.anyio

GOOD: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
USER = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({**GOOD, "temperature": "hot"}, "temperature", None),
        ({**GOOD, "messages": "hi"}, "messages", None),
        ({**GOOD, "model": 5}, "model", None),
        ({**GOOD, "stream": "sometimes"}, "stream", None),
        ({**GOOD, "temperature": 3}, "temperature", None),
        ({**GOOD, "top_p": 2}, "top_p", None),
        ({**GOOD, "n": 0}, "n", None),
        ({**GOOD, "max_tokens": 0}, "max_tokens", None),
        ({**GOOD, "max_completion_tokens": 0}, "max_completion_tokens", None),
        ({**GOOD, "frequency_penalty": -2.5}, "frequency_penalty", None),
        ({**GOOD, "presence_penalty": 2.5}, "presence_penalty", None),
        ({**GOOD, "top_logprobs": 21, "logprobs": True}, "top_logprobs", None),
        ({**GOOD, "top_logprobs": 2}, "top_logprobs", None),
        ({**GOOD, "logit_bias": {"5": 101}}, "logit_bias.5", None),
        ({**GOOD, "logit_bias": {"abc": 1}}, "logit_bias.abc", None),
        ({**GOOD, "stop": ["a", "b", "c", "d", "e"]}, "stop", "array_above_max_length"),
        ({**GOOD, "stream_options": {"include_usage": True}}, "stream_options", None),
        ({**GOOD, "messages": []}, "messages", None),
        ({**GOOD, "messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id", None),
        ({**GOOD, "messages": [{"role": "function", "content": "x"}]}, "messages[0].role", None),
        ({**GOOD, "messages": [{"role": "user"}]}, "messages[0].content", None),
        ({**GOOD, "messages": [{"role": "user", "content": None}]}, "messages[0].content", None),
        (
            {**GOOD, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
            "messages[0].content",
            "unsupported_value",
        ),
        ({"messages": USER}, "model", None),
        ({**GOOD, "tools": [{"type": "web_search"}]}, "tools[0].type", "unsupported_value"),
        ({**GOOD, "tool_choice": "auto"}, "tool_choice", None),
        ({**GOOD, "functions": [{"name": "f"}]}, "functions", "unsupported_parameter"),
        ({**GOOD, "function_call": "auto"}, "function_call", "unsupported_parameter"),
        ({**GOOD, "audio": {"voice": "x"}}, "audio", "unsupported_parameter"),
        ({**GOOD, "prediction": {"type": "content"}}, "prediction", "unsupported_parameter"),
        ({**GOOD, "response_format": {"type": "json_schema"}}, "response_format.json_schema", None),
        ({**GOOD, "modalities": ["text", "audio"]}, "modalities", "unsupported_value"),
    ],
)
async def test_bad_request_is_400_openai_shape(
    http: httpx.AsyncClient, body: dict[str, Any], param: str, code: str | None
) -> None:
    response = await http.post("/v1/chat/completions", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["code"] == code
    assert param in error["message"]
    ok = await http.post("/v1/chat/completions", json=GOOD)
    assert ok.status_code == 200


@pytest.mark.parametrize(
    "extra",
    [
        {"tools": []},
        {"tool_choice": "none"},
        {"response_format": {"type": "text"}},
        {"modalities": ["text"]},
        {"store": False, "metadata": {"a": "b"}, "some_future_field": 1},
        {"stop": "x", "seed": 1, "user": "u", "top_k": -1, "min_p": 0.1, "repetition_penalty": 1.1},
    ],
)
async def test_accepted_fields(http: httpx.AsyncClient, extra: dict[str, Any]) -> None:
    response = await http.post("/v1/chat/completions", json={**GOOD, **extra})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("raw", [b'{"model": "m", "messages": [', b"not json", b"[1, 2]", b""])
async def test_malformed_json_is_400(http: httpx.AsyncClient, raw: bytes) -> None:
    response = await http.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert (await http.post("/v1/chat/completions", json=GOOD)).status_code == 200


async def test_unknown_route_and_wrong_method_are_openai_shaped(http: httpx.AsyncClient) -> None:
    missing = await http.get("/v1/nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "invalid_request_error"
    wrong = await http.get("/v1/chat/completions")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"


async def test_form_body_hints_at_json(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/chat/completions", content=b'{"model": "m"}')
    assert response.status_code == 400
    assert "application/json" in response.json()["error"]["message"]
