"""POST /v1/chat/completions against a fake client: stream, non-stream, errors before and after the 200."""

from __future__ import annotations

from typing import Any

import grpc
import httpx
import pytest

from inference_service.api.v1 import generation_pb2 as pb
from tests.http_bridge.fakes import FakeClient, complete, hello, rpc_error, sse_payloads, text

pytestmark = pytest.mark.anyio

BODY: dict[str, Any] = {
    "model": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "messages": [{"role": "user", "content": "Say hello"}],
}


async def test_non_stream_completion(http: httpx.AsyncClient, fake: FakeClient) -> None:
    response = await http.post("/v1/chat/completions", json={**BODY, "max_tokens": 5}, headers={"x-request-id": "r-1"})
    assert response.status_code == 200
    data = response.json()
    assert data["id"] == "chatcmpl-r-1"
    assert response.headers["x-request-id"] == "r-1"
    assert data["object"] == "chat.completion"
    assert isinstance(data["created"], int)
    assert data["model"] == BODY["model"]
    assert data["system_fingerprint"] == "fp_abc123"
    assert data["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello"},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert data["usage"] == {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}
    request, request_id, timeout = fake.requests[0]
    assert request_id == "r-1" and request.request_id == "r-1"
    assert request.stopping.max_tokens == 5
    assert timeout == 30


async def test_insane_request_id_is_replaced(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/chat/completions", json=BODY, headers={"x-request-id": "bad id/with spaces"})
    request_id = response.headers["x-request-id"]
    assert request_id != "bad id/with spaces" and len(request_id) == 32
    assert response.json()["id"] == f"chatcmpl-{request_id}"


async def test_unknown_model_fingerprint_falls_back(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/chat/completions", json={**BODY, "model": "other"})
    assert response.json()["system_fingerprint"] == "fp_ortserve"


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/chat/completions", "/v1/inference/chat/completions"])
async def test_path_variants(http: httpx.AsyncClient, path: str) -> None:
    response = await http.post(path, json=BODY)
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "Hello"


async def test_stream_chunk_order(http: httpx.AsyncClient, fake: FakeClient) -> None:
    fake.script = hello(n=2)
    body = {**BODY, "stream": True, "n": 2, "stream_options": {"include_usage": True}}
    response = await http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_payloads(response.text)
    assert events[-1] == "[DONE]"
    chunks: list[dict[str, Any]] = events[:-1]  # type: ignore[assignment]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    deltas = [(c["choices"][0]["index"], c["choices"][0]["delta"]) for c in chunks[:-1]]
    assert deltas[:2] == [
        (0, {"role": "assistant", "content": ""}),
        (1, {"role": "assistant", "content": ""}),
    ]
    for index in (0, 1):
        mine = [c["choices"][0] for c in chunks[:-1] if c["choices"][0]["index"] == index]
        assert "".join(choice["delta"].get("content", "") for choice in mine) == "Hello"
        assert [choice["finish_reason"] for choice in mine] == [None, None, None, "stop"]
        assert mine[-1]["delta"] == {}
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11}
    assert fake.closed == ["finished"]


async def test_stream_without_usage_has_no_usage_chunk(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/chat/completions", json={**BODY, "stream": True})
    events = sse_payloads(response.text)
    assert events[-1] == "[DONE]"
    assert all(e["choices"] and e["usage"] is None for e in events[:-1])  # type: ignore[index]


async def test_stream_logprobs(http: httpx.AsyncClient, fake: FakeClient) -> None:
    logprob = pb.TokenLogprob(token="Hi", logprob=-0.5, bytes=b"Hi")
    fake.script = [text(0, "Hi", [logprob]), complete(0)]
    response = await http.post("/v1/chat/completions", json={**BODY, "stream": True, "logprobs": True})
    events = sse_payloads(response.text)
    content = events[1]["choices"][0]  # type: ignore[index]
    assert content["logprobs"] == {
        "content": [{"token": "Hi", "logprob": -0.5, "bytes": [72, 105], "top_logprobs": []}]
    }


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, 400),
        (grpc.StatusCode.NOT_FOUND, 404),
        (grpc.StatusCode.UNAVAILABLE, 503),
    ],
)
async def test_stream_error_before_first_message_is_http_status(
    http: httpx.AsyncClient, fake: FakeClient, code: grpc.StatusCode, status: int
) -> None:
    fake.script = [rpc_error(code, "prompt too long")]
    response = await http.post("/v1/chat/completions", json={**BODY, "stream": True})
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["message"] == "prompt too long"


async def test_stream_error_mid_stream_is_error_event_then_done(http: httpx.AsyncClient, fake: FakeClient) -> None:
    fake.script = [text(0, "Hel"), rpc_error(grpc.StatusCode.UNAVAILABLE, "engine stopped")]
    response = await http.post("/v1/chat/completions", json={**BODY, "stream": True})
    assert response.status_code == 200
    events = sse_payloads(response.text)
    assert events[-1] == "[DONE]"
    assert events[-2] == {"error": {"message": "engine stopped", "type": "server_error", "param": None, "code": None}}
    assert events[1]["choices"][0]["delta"] == {"content": "Hel"}  # type: ignore[index]


async def test_unexpected_exception_mid_stream_is_server_error_event(http: httpx.AsyncClient, fake: FakeClient) -> None:
    fake.script = [text(0, "a"), RuntimeError("bug")]
    events = sse_payloads((await http.post("/v1/chat/completions", json={**BODY, "stream": True})).text)
    assert events[-2]["error"]["type"] == "server_error"  # type: ignore[index]
    assert events[-1] == "[DONE]"


async def test_empty_stream_is_500(http: httpx.AsyncClient, fake: FakeClient) -> None:
    fake.script = []
    response = await http.post("/v1/chat/completions", json={**BODY, "stream": True})
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "server_error"


async def test_first_message_timeout_is_504(http: httpx.AsyncClient, fake: FakeClient, settings: Any) -> None:
    settings.first_message_timeout_s = 0.05
    fake.script = []
    fake.block_after_script = True
    response = await http.post("/v1/chat/completions", json={**BODY, "stream": True})
    assert response.status_code == 504
    assert response.json()["error"]["type"] == "timeout"
    assert fake.closed == ["cancelled"]


async def test_unexpected_exception_before_stream_is_500_openai_shape(
    http: httpx.AsyncClient, fake: FakeClient
) -> None:
    fake.script = [RuntimeError("bug")]
    response = await http.post("/v1/chat/completions", json=BODY, headers={"x-request-id": "abc"})
    assert response.status_code == 500
    assert response.json() == {
        "error": {"message": "Internal server error", "type": "server_error", "param": None, "code": None}
    }
    assert response.headers["x-request-id"] == "abc"
    fake.script = hello()
    assert (await http.post("/v1/chat/completions", json=BODY)).status_code == 200


@pytest.mark.parametrize(
    ("path", "body"),
    [("/v1/chat/completions", BODY), ("/v1/completions", {"model": BODY["model"], "prompt": "Say hello"})],
)
async def test_streams_are_neither_cached_nor_buffered(
    http: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> None:
    response = await http.post(path, json={**body, "stream": True})
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
