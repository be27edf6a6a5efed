"""Legacy /v1/completions on the real stack with the official Python SDK."""

from __future__ import annotations

from typing import Any

import grpc
import httpx
import openai
import pytest

from inference_service.api.v1 import generation_pb2 as pb
from inference_service.api.v1 import generation_pb2_grpc
from tests.e2e.conftest import MODEL_ID, Stack

pytestmark = pytest.mark.e2e
PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def client(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key="unused", max_retries=0, timeout=120)


def complete(client: openai.OpenAI, **params: Any) -> Any:
    params.setdefault("prompt", PROMPT)
    params.setdefault("temperature", 0)
    return client.completions.create(model=MODEL_ID, **params)


def test_greedy_completion(client: openai.OpenAI) -> None:
    reply = complete(client, max_tokens=3)
    assert reply.object == "text_completion" and reply.id.startswith("cmpl-")
    assert reply.choices[0].text.startswith(" Paris")
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 3 and reply.usage.prompt_tokens == 5
    assert complete(client, max_tokens=None).usage.completion_tokens <= 16  # OpenAI's default max_tokens


def test_prompt_lists_n_and_token_ids(client: openai.OpenAI, stack: Stack) -> None:
    other = "The largest planet is"
    reply = complete(client, prompt=[PROMPT, other], n=2, max_tokens=4)
    assert [c.index for c in reply.choices] == [0, 1, 2, 3]
    single = [complete(client, prompt=p, max_tokens=4).choices[0].text for p in (PROMPT, other)]
    assert [c.text for c in reply.choices] == [single[0], single[0], single[1], single[1]]
    with grpc.insecure_channel(stack.grpc_target) as channel:
        stub = generation_pb2_grpc.GenerationServiceStub(channel)
        ids = list(stub.Tokenize(pb.TokenizeRequest(model=MODEL_ID, prompt=PROMPT)).token_ids)
    assert complete(client, prompt=ids, max_tokens=4).choices[0].text == single[0]


def test_stream_stop_and_usage(client: openai.OpenAI) -> None:
    chunks = list(complete(client, stop=[".", "\n"], stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == " Paris"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens >= 1


def test_legacy_logprobs(client: openai.OpenAI) -> None:
    logprobs = complete(client, max_tokens=4, logprobs=2).choices[0].logprobs
    assert len(logprobs.tokens) == len(logprobs.token_logprobs) == len(logprobs.top_logprobs) == 4
    assert logprobs.text_offset[0] == 0
    for token, value, top in zip(logprobs.tokens, logprobs.token_logprobs, logprobs.top_logprobs, strict=True):
        assert value <= 0 and top[token] == value and 2 <= len(top) <= 3


def test_seed_and_bad_input(client: openai.OpenAI, stack: Stack) -> None:
    seeded = [complete(client, temperature=1, seed=5, max_tokens=12).choices[0].text for _ in range(2)]
    assert seeded[0] == seeded[1]
    bad_inputs: list[dict[str, Any]] = [
        {"echo": True},
        {"logprobs": 9},
        {"prompt": []},
        {"prompt": [10**9]},
        {"prompt": "x" * 40000},
    ]
    for bad in bad_inputs:
        with pytest.raises(openai.BadRequestError):
            complete(client, **bad)
    raw = httpx.post(f"{stack.base_url}/completions", content=b"{", headers={"content-type": "application/json"})
    assert raw.status_code == 400
    assert complete(client, max_tokens=2).choices[0].text
