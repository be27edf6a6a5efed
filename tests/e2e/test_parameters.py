"""OpenAI parameter semantics on the real stack (real model, real bridge, official Python SDK)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import openai
import pytest

from inference_service.api.v1 import generation_pb2 as pb
from inference_service.api.v1 import generation_pb2_grpc
from tests.e2e.conftest import MODEL_ID, Stack

pytestmark = pytest.mark.e2e
FRANCE: list[Any] = [{"role": "user", "content": "What is the capital of France?"}]
POEM: list[Any] = [{"role": "user", "content": "Write a short poem about the sea."}]


@pytest.fixture(scope="module")
def client(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def token_id(stack: Stack) -> Iterator[Any]:
    with grpc.insecure_channel(stack.grpc_target) as channel:
        stub = generation_pb2_grpc.GenerationServiceStub(channel)

        def lookup(token: str) -> int:
            ids = list(stub.Tokenize(pb.TokenizeRequest(model=MODEL_ID, prompt=token)).token_ids)
            assert len(ids) == 1, (token, ids)
            return ids[0]

        yield lookup


def chat(client: openai.OpenAI, messages: list[Any] = FRANCE, **params: Any) -> Any:
    params.setdefault("temperature", 0)
    return client.chat.completions.create(model=MODEL_ID, messages=messages, **params)


def tokens(reply: Any) -> list[str]:
    return [item.token for item in reply.choices[0].logprobs.content]


def test_n2_streaming_gives_each_choice_its_index_and_finish(client: openai.OpenAI) -> None:
    stream = chat(client, n=2, temperature=1, seed=7, max_tokens=10, stream=True)
    texts, finishes = ["", ""], [[], []]  # type: ignore[var-annotated]
    for chunk in stream:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            if choice.finish_reason:
                finishes[choice.index].append(choice.finish_reason)
    assert all(texts)
    assert all(len(f) == 1 and f[0] in ("stop", "length") for f in finishes), finishes


def test_logprobs_structure(client: openai.OpenAI) -> None:
    reply = chat(client, max_tokens=5, logprobs=True, top_logprobs=4)
    content = reply.choices[0].logprobs.content
    assert len(content) == reply.usage.completion_tokens == 5
    assert "".join(item.token for item in content) == reply.choices[0].message.content
    for item in content:
        assert item.logprob <= 0
        assert bytes(item.bytes).decode() == item.token
        assert len(item.top_logprobs) == 4
        values = [top.logprob for top in item.top_logprobs]
        assert values == sorted(values, reverse=True)
        assert item.top_logprobs[0].token == item.token  # greedy: the sampled token is the most likely
        assert all(isinstance(top.bytes, list) for top in item.top_logprobs)
    assert chat(client, max_tokens=2).choices[0].logprobs is None


def test_include_usage_and_stop_list_while_streaming(client: openai.OpenAI) -> None:
    stream = chat(client, stop=["Paris", "Lyon"], stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("The capital of France is") and "Paris" not in text
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == chunks[-1].usage.prompt_tokens + chunks[-1].usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])


def test_seed(client: openai.OpenAI) -> None:
    def sample(seed: int) -> str:
        return str(chat(client, POEM, temperature=1, seed=seed, max_tokens=24).choices[0].message.content)

    assert sample(11) == sample(11)
    assert len({sample(seed) for seed in (1, 2, 3)}) > 1


def test_presence_and_frequency_penalties_reduce_repetition(client: openai.OpenAI) -> None:
    def repeats(**penalty: float) -> int:
        toks = tokens(chat(client, POEM, max_tokens=60, logprobs=True, **penalty))
        return len(toks) - len(set(toks))

    plain = repeats()
    assert repeats(presence_penalty=2) < plain * 0.75
    assert repeats(frequency_penalty=2) < plain * 0.75
    assert repeats(presence_penalty=-2) >= plain  # a negative penalty encourages repetition


def test_logit_bias(client: openai.OpenAI, token_id: Any) -> None:
    greedy_first = tokens(chat(client, max_tokens=1, logprobs=True))[0]
    banned = chat(client, max_tokens=1, logprobs=True, logit_bias={str(token_id(greedy_first)): -100})
    assert tokens(banned)[0] != greedy_first
    forced = chat(client, max_tokens=3, logprobs=True, logit_bias={str(token_id("Hello")): 100})
    assert tokens(forced) == ["Hello"] * 3


def test_max_completion_tokens_wins_over_max_tokens(client: openai.OpenAI) -> None:
    reply = chat(client, POEM, max_tokens=20, max_completion_tokens=4)
    assert reply.usage.completion_tokens == 4 and reply.choices[0].finish_reason == "length"


def test_message_forms(client: openai.OpenAI) -> None:
    plain = chat(client).choices[0].message.content
    parts = [{"type": "text", "text": "What is the capital"}, {"type": "text", "text": " of France?"}]
    assert chat(client, [{"role": "user", "content": parts}]).choices[0].message.content == plain
    named = [{"role": "user", "name": "alice", "content": FRANCE[0]["content"]}]
    assert "Paris" in chat(client, named).choices[0].message.content
    extras = {"store": False, "metadata": {"k": "v"}, "some_future_field": [1, 2], "service_tier": "auto"}
    assert chat(client, extra_body=extras).choices[0].message.content == plain
    # developer is the system role for this (ChatML) model: it replaces the default system prompt.
    developer = chat(client, [{"role": "developer", "content": "Answer with one word."}, *FRANCE], max_tokens=20)
    system = chat(client, [{"role": "system", "content": "Answer with one word."}, *FRANCE], max_tokens=20)
    assert developer.usage.prompt_tokens == system.usage.prompt_tokens < chat(client).usage.prompt_tokens
    assert developer.choices[0].message.content == system.choices[0].message.content


@pytest.mark.parametrize(
    ("path", "param", "value"),
    [
        ("/v1/chat/completions", "functions", [{"name": "f"}]),
        ("/v1/chat/completions", "function_call", {"name": "f"}),
        ("/v1/chat/completions", "audio", {"voice": "alloy", "format": "wav"}),
        ("/v1/chat/completions", "prediction", {"type": "content", "content": "x"}),
        ("/v1/chat/completions", "web_search_options", {}),
        ("/v1/chat/completions", "modalities", ["text", "audio"]),
        ("/v1/completions", "echo", True),
        ("/v1/completions", "suffix", "tail"),
        ("/v1/completions", "best_of", 3),
    ],
)
def test_unsupported_parameters_are_400_naming_them(stack: Stack, path: str, param: str, value: Any) -> None:
    body: dict[str, Any] = {"model": MODEL_ID, param: value, "max_tokens": 2}
    body.update({"messages": FRANCE} if "chat" in path else {"prompt": "Hello"})
    response = httpx.post(f"{stack.base_url}{path}", json=body, timeout=30)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and param in error["message"]
    assert error["code"] in ("unsupported_parameter", "unsupported_value")
    del body[param]
    assert httpx.post(f"{stack.base_url}{path}", json=body, timeout=60).status_code == 200
