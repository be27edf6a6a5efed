"""The official OpenAI Python client against the real bridge and inference service."""

from __future__ import annotations

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.e2e.conftest import MODEL_ID, Stack

pytestmark = pytest.mark.e2e
FRANCE: list[ChatCompletionMessageParam] = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def client(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key="unused", max_retries=0, timeout=120)


def test_non_stream_completion(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=MODEL_ID, messages=FRANCE, temperature=0)
    assert reply.object == "chat.completion"
    assert reply.id.startswith("chatcmpl-")
    assert reply.model == MODEL_ID
    assert reply.created > 0
    assert reply.system_fingerprint and reply.system_fingerprint.startswith("fp_")
    choice = reply.choices[0]
    assert "Paris" in (choice.message.content or "")
    assert choice.message.role == "assistant"
    assert choice.finish_reason == "stop"
    assert reply.usage is not None
    assert reply.usage.prompt_tokens > 30  # includes the template's default system prompt
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_stream_equals_non_stream_at_temperature_zero(client: openai.OpenAI) -> None:
    ask = "Give me three tips for learning to cook."
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": ask}]
    full = client.chat.completions.create(model=MODEL_ID, messages=messages, temperature=0, max_tokens=60)
    stream = client.chat.completions.create(
        model=MODEL_ID,
        messages=messages,
        temperature=0,
        max_tokens=60,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    deltas = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert len([d for d in deltas if d]) > 5
    assert "".join(deltas) == full.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [full.choices[0].finish_reason] == ["length"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 60
    assert all(c.id == chunks[0].id for c in chunks)


def test_stop_strings(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=MODEL_ID, messages=FRANCE, temperature=0, stop=["Paris", "London"])
    content = reply.choices[0].message.content or ""
    assert "Paris" not in content
    assert content.startswith("The capital of France is")
    assert reply.choices[0].finish_reason == "stop"


def test_max_tokens_gives_length(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=MODEL_ID, messages=FRANCE, temperature=0, max_tokens=3)
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None and reply.usage.completion_tokens == 3


def test_models_endpoints(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == [MODEL_ID]
    assert client.models.retrieve(MODEL_ID).id == MODEL_ID
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_errors_are_typed_and_server_keeps_serving(client: openai.OpenAI, stack: Stack) -> None:
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=FRANCE)
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL_ID, messages=FRANCE, temperature=5)
    assert err.value.status_code == 400
    too_long: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello " * 5000}]
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL_ID, messages=too_long)
    assert "context length" in str(err.value)
    raw = httpx.post(
        f"{stack.base_url}/v1/chat/completions",
        content=b"{not json",
        timeout=10,
        headers={"content-type": "application/json"},
    )
    assert raw.status_code == 400
    assert set(raw.json()["error"]) >= {"message", "type", "param", "code"}
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL_ID, messages=[])
    reply = client.chat.completions.create(model=MODEL_ID, messages=FRANCE, temperature=0)
    assert "Paris" in (reply.choices[0].message.content or "")


def test_health_endpoints(stack: Stack) -> None:
    assert httpx.get(f"{stack.base_url}/health", timeout=5).status_code == 200
    assert httpx.get(f"{stack.base_url}/health/ready", timeout=5).status_code == 200
