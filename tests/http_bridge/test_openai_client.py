"""The official openai SDK talks to the app in-process (httpx2 ASGI transport, no sockets)."""

from __future__ import annotations

import grpc
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.http_bridge.fakes import MODEL_ID, FakeClient, hello, rpc_error

pytestmark = pytest.mark.anyio

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello"}]


async def test_non_stream(sdk: openai.AsyncOpenAI) -> None:
    completion = await sdk.chat.completions.create(model=MODEL_ID, messages=MESSAGES, max_tokens=8)
    assert completion.choices[0].message.content == "Hello"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.total_tokens == 9
    assert completion.system_fingerprint == "fp_abc123"


async def test_stream(sdk: openai.AsyncOpenAI, fake: FakeClient) -> None:
    fake.script = hello(n=2)
    stream = await sdk.chat.completions.create(
        model=MODEL_ID,
        messages=MESSAGES,
        stream=True,
        n=2,
        stream_options={"include_usage": True},
    )
    texts = ["", ""]
    reasons: list[str | None] = [None, None]
    usage = None
    async for chunk in stream:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            reasons[choice.index] = choice.finish_reason or reasons[choice.index]
        usage = chunk.usage or usage
    assert texts == ["Hello", "Hello"]
    assert reasons == ["stop", "stop"]
    assert usage is not None and usage.completion_tokens == 4


async def test_bad_request_raises(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.chat.completions.create(model=MODEL_ID, messages=MESSAGES, temperature=3)
    assert caught.value.param == "temperature"
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.chat.completions.create(
            model=MODEL_ID,
            messages=MESSAGES,
            tools=[{"type": "function", "function": {"name": "not a name", "parameters": {}}}],
        )
    assert caught.value.param == "tools[0].function.name"


async def test_not_found_raises(sdk: openai.AsyncOpenAI, fake: FakeClient) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await sdk.models.retrieve("no/such-model")
    assert caught.value.code == "model_not_found"
    fake.script = [rpc_error(grpc.StatusCode.NOT_FOUND, "model 'x' is not served")]
    with pytest.raises(openai.NotFoundError):
        await sdk.chat.completions.create(model="x", messages=MESSAGES, stream=True)


async def test_rate_limit_raises(sdk: openai.AsyncOpenAI, fake: FakeClient) -> None:
    fake.script = [rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full")]
    with pytest.raises(openai.RateLimitError):
        await sdk.chat.completions.create(model=MODEL_ID, messages=MESSAGES)


async def test_models(sdk: openai.AsyncOpenAI) -> None:
    page = await sdk.models.list()
    assert [model.id for model in page.data] == [MODEL_ID]
    model = await sdk.models.retrieve(MODEL_ID)
    assert model.owned_by == "ortserve"


async def test_error_mid_stream_raises(sdk: openai.AsyncOpenAI, fake: FakeClient) -> None:
    fake.script = [*hello()[:1], rpc_error(grpc.StatusCode.UNAVAILABLE, "engine stopped")]
    stream = await sdk.chat.completions.create(model=MODEL_ID, messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError, match="engine stopped"):
        async for _ in stream:
            pass


async def test_legacy_completions(sdk: openai.AsyncOpenAI, fake: FakeClient) -> None:
    fake.script = hello(n=2)
    completion = await sdk.completions.create(model=MODEL_ID, prompt=["a", "b"], n=2, max_tokens=4)
    assert completion.object == "text_completion"
    assert [(c.index, c.text) for c in completion.choices] == [(i, "Hello") for i in range(4)]
    fake.script = hello()
    stream = await sdk.completions.create(model=MODEL_ID, prompt="a", stream=True)
    assert "".join([chunk.choices[0].text async for chunk in stream if chunk.choices]) == "Hello"
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.completions.create(model=MODEL_ID, prompt="a", echo=True)
    assert caught.value.param == "echo"
