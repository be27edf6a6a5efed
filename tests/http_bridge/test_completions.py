"""POST /v1/completions against a fake client: prompts, n, streaming, legacy logprobs, validation, errors."""

from __future__ import annotations

from typing import Any

import grpc
import httpx
import pytest

from http_bridge.schemas.completions import CompletionRequest
from http_bridge.translate import completions
from inference_service.api.v1 import generation_pb2 as pb
from tests.http_bridge.fakes import FakeClient, complete, hello, rpc_error, sse_payloads, text

pytestmark = pytest.mark.anyio

GOOD: dict[str, Any] = {"model": "m", "prompt": "Once upon a time"}


def lp(token: str, logprob: float, *alts: tuple[str, float]) -> pb.TokenLogprob:
    tops = [pb.TopLogprob(token=t, logprob=v) for t, v in alts]
    return pb.TokenLogprob(token=token, logprob=logprob, top_logprobs=tops)


async def test_non_stream(http: httpx.AsyncClient, fake: FakeClient) -> None:
    response = await http.post("/v1/completions", json=GOOD, headers={"x-request-id": "r-9"})
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["id"] == "cmpl-r-9"
    assert data["object"] == "text_completion"
    assert data["system_fingerprint"] == "fp_ortserve"
    assert data["choices"] == [{"index": 0, "text": "Hello", "logprobs": None, "finish_reason": "stop"}]
    assert data["usage"] == {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}
    request = fake.requests[0][0]
    assert request.WhichOneof("input") == "prompt" and request.prompt == "Once upon a time"
    assert request.stopping.max_tokens == 16  # OpenAI's default for completions
    assert not request.output.logprobs


@pytest.mark.parametrize("path", ["/v1/completions", "/completions"])
async def test_path_variants(http: httpx.AsyncClient, path: str) -> None:
    assert (await http.post(path, json=GOOD)).json()["choices"][0]["text"] == "Hello"


async def test_list_of_prompts_with_n(http: httpx.AsyncClient, fake: FakeClient) -> None:
    fake.script = [text(0, "A"), text(1, "B"), complete(0, pb.FINISH_REASON_MAX_TOKENS), complete(1)]
    body = {**GOOD, "prompt": ["one", "two", "three"], "n": 2, "max_tokens": 3}
    data = (await http.post("/v1/completions", json=body, headers={"x-request-id": "multi"})).json()
    assert [(c["index"], c["text"], c["finish_reason"]) for c in data["choices"]] == [
        (0, "A", "length"),
        (1, "B", "stop"),
        (2, "A", "length"),
        (3, "B", "stop"),
        (4, "A", "length"),
        (5, "B", "stop"),
    ]
    assert data["usage"] == {"prompt_tokens": 21, "completion_tokens": 12, "total_tokens": 33}
    sent = [r for r, _, _ in fake.requests]
    assert [r.prompt for r in sent] == ["one", "two", "three"]
    assert [r.request_id for r in sent] == ["multi-0", "multi-1", "multi-2"]
    assert all(r.n == 2 and r.stopping.max_tokens == 3 for r in sent)


@pytest.mark.parametrize(("prompt", "expected"), [([1, 2, 3], [[1, 2, 3]]), ([[5], [6, 7]], [[5], [6, 7]])])
async def test_token_id_prompts(http: httpx.AsyncClient, fake: FakeClient, prompt: Any, expected: Any) -> None:
    assert (await http.post("/v1/completions", json={**GOOD, "prompt": prompt})).status_code == 200
    assert [list(r.token_ids.ids) for r, _, _ in fake.requests] == expected


async def test_stream_with_usage(http: httpx.AsyncClient, fake: FakeClient) -> None:
    fake.script = hello(n=2)
    body = {**GOOD, "prompt": ["a", "b"], "n": 2, "stream": True, "stream_options": {"include_usage": True}}
    response = await http.post("/v1/completions", json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_payloads(response.text)
    assert events[-1] == "[DONE]"
    chunks: list[dict[str, Any]] = events[:-1]  # type: ignore[assignment]
    assert all(c["object"] == "text_completion" and c["id"] == chunks[0]["id"] for c in chunks)
    texts: dict[int, str] = {}
    reasons: dict[int, str] = {}
    for chunk in chunks[:-1]:
        (choice,) = chunk["choices"]
        texts[choice["index"]] = texts.get(choice["index"], "") + choice["text"]
        if choice["finish_reason"]:
            assert choice["index"] not in reasons
            reasons[choice["index"]] = choice["finish_reason"]
    assert texts == {i: "Hello" for i in range(4)}
    assert reasons == {i: "stop" for i in range(4)}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 8


async def test_legacy_logprobs(http: httpx.AsyncClient, fake: FakeClient) -> None:
    fake.script = [
        text(0, "Hel", [lp("Hel", -0.5, ("Hel", -0.5), ("He", -1.5))]),
        text(0, "lo", [lp("lo", -0.1, ("p", -3.0))]),
        complete(0),
    ]
    data = (await http.post("/v1/completions", json={**GOOD, "logprobs": 2})).json()
    assert fake.requests[0][0].output.logprobs and fake.requests[0][0].output.top_logprobs == 2
    assert data["choices"][0]["logprobs"] == {
        "tokens": ["Hel", "lo"],
        "token_logprobs": [-0.5, pytest.approx(-0.1)],
        "top_logprobs": [{"Hel": -0.5, "He": -1.5}, {"p": -3.0, "lo": pytest.approx(-0.1)}],
        "text_offset": [0, 3],
    }
    stream = await http.post("/v1/completions", json={**GOOD, "logprobs": 0, "stream": True})
    chunks: list[dict[str, Any]] = sse_payloads(stream.text)[:-1]  # type: ignore[assignment]
    offsets = [c["choices"][0]["logprobs"]["text_offset"] for c in chunks if c["choices"][0]["text"]]
    assert offsets == [[0], [3]]


async def test_logprobs_zero_asks_for_sampled_token_only() -> None:
    body = CompletionRequest.model_validate({**GOOD, "logprobs": 0})
    (request,) = completions.to_generate_requests(body, "r")
    assert request.output.logprobs and request.output.top_logprobs == 0


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"model": "m"}, "prompt", None),
        ({**GOOD, "prompt": ""}, "prompt", None),
        ({**GOOD, "prompt": []}, "prompt", None),
        ({**GOOD, "prompt": 5}, "prompt", None),
        ({**GOOD, "prompt": ["a", 1]}, "prompt", None),
        ({**GOOD, "prompt": [-1]}, "prompt", None),
        ({**GOOD, "prompt": [[]]}, "prompt", None),
        ({**GOOD, "prompt": ["a"] * 129}, "prompt", None),
        ({**GOOD, "max_tokens": 0}, "max_tokens", None),
        ({**GOOD, "n": 0}, "n", None),
        ({**GOOD, "temperature": -1}, "temperature", None),
        ({**GOOD, "top_p": "x"}, "top_p", None),
        ({**GOOD, "stop": ["a", "b", "c", "d", "e"]}, "stop", "array_above_max_length"),
        ({**GOOD, "logprobs": 6}, "logprobs", None),
        ({**GOOD, "logprobs": True}, "logprobs", None),
        ({**GOOD, "logit_bias": {"1": 200}}, "logit_bias.1", None),
        ({**GOOD, "seed": "x"}, "seed", None),
        ({**GOOD, "echo": True}, "echo", "unsupported_value"),
        ({**GOOD, "suffix": "end"}, "suffix", "unsupported_parameter"),
        ({**GOOD, "best_of": 3}, "best_of", "unsupported_value"),
        ({**GOOD, "best_of": 0}, "best_of", None),
        ({**GOOD, "stream_options": {"include_usage": True}}, "stream_options", None),
    ],
)
async def test_bad_request_is_400(http: httpx.AsyncClient, body: dict[str, Any], param: str, code: str | None) -> None:
    response = await http.post("/v1/completions", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)
    assert param in error["message"]
    assert (await http.post("/v1/completions", json=GOOD)).status_code == 200


@pytest.mark.parametrize(
    "extra",
    [{"echo": False, "suffix": None, "best_of": 1}, {"best_of": 2, "n": 2}, {"max_tokens": None, "user": "u", "x": 1}],
)
async def test_accepted_fields(http: httpx.AsyncClient, extra: dict[str, Any]) -> None:
    assert (await http.post("/v1/completions", json={**GOOD, **extra})).status_code == 200


@pytest.mark.parametrize("stream", [False, True])
async def test_upstream_errors_become_statuses(http: httpx.AsyncClient, fake: FakeClient, stream: bool) -> None:
    fake.script = [rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "prompt is longer than the context")]
    response = await http.post("/v1/completions", json={**GOOD, "prompt": ["a", "b"], "stream": stream})
    assert response.status_code == 400
    assert "context" in response.json()["error"]["message"]
    fake.script = hello()
    assert (await http.post("/v1/completions", json=GOOD)).status_code == 200


async def test_error_mid_stream_is_one_event(http: httpx.AsyncClient, fake: FakeClient) -> None:
    fake.script = [text(0, "Hel"), rpc_error(grpc.StatusCode.UNAVAILABLE, "engine stopped")]
    response = await http.post("/v1/completions", json={**GOOD, "prompt": ["a", "b"], "stream": True})
    events = sse_payloads(response.text)
    assert events[-1] == "[DONE]"
    errors = [e for e in events if isinstance(e, dict) and "error" in e]
    assert len(errors) == 1 and errors[0]["error"]["message"] == "engine stopped"
