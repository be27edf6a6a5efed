"""Tool calls and constrained output on the response side, from scripted Generate responses: the assembled
message.tool_calls, the streamed pieces, finish reasons, and the official SDK's helpers (parse, stream) on them."""

from __future__ import annotations

import json
from typing import Any, Literal

import httpx
import openai
import pytest
from pydantic import BaseModel, Field

from inference_service.api.v1 import generation_pb2 as pb
from tests.http_bridge.fakes import MODEL_ID, FakeClient, calls, complete, sse_payloads, text
from tests.http_bridge.openapi_check import validate

pytestmark = pytest.mark.anyio

USER = [{"role": "user", "content": "Weather in Paris and the time?"}]
WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_SCHEMA}},
    {"type": "function", "function": {"name": "get_time"}},
]
CHAT: dict[str, Any] = {"model": MODEL_ID, "messages": USER, "tools": TOOLS}
TOOL_CALLS = pb.FINISH_REASON_TOOL_CALLS


def two_calls(index: int = 0) -> list[pb.GenerateResponse]:
    """Two calls, their pieces spread over chunks (one chunk carries the end of one call and the start of the next)."""
    return [
        calls(index, (0, f"call_w{index}", "get_weather", "")),
        calls(index, (0, "", "", '{"city":')),
        calls(index, (0, "", "", '"Paris"}'), (1, f"call_t{index}", "get_time", ""), (1, "", "", "{")),
        calls(index, (1, "", "", "}")),
        complete(index, TOOL_CALLS),
    ]


EXPECTED: list[dict[str, Any]] = [
    {"id": "call_w0", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
    {"id": "call_t0", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
]


async def test_non_stream_assembles_calls(http: httpx.AsyncClient, fake: FakeClient) -> None:
    fake.script = two_calls()
    response = await http.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 200, response.text
    [choice] = response.json()["choices"]
    assert choice["message"] == {"role": "assistant", "content": None, "tool_calls": EXPECTED}
    assert choice["finish_reason"] == "tool_calls"


async def test_text_before_calls_is_content(http: httpx.AsyncClient, fake: FakeClient) -> None:
    fake.script = [text(0, "Let me "), calls(0, (0, "call_w0", "get_weather", ""), value="check."), *two_calls()[1:]]
    message = (await http.post("/v1/chat/completions", json=CHAT)).json()["choices"][0]["message"]
    assert message["content"] == "Let me check."
    assert message["tool_calls"] == EXPECTED


async def test_answer_without_calls_has_no_tool_calls_key(http: httpx.AsyncClient, fake: FakeClient) -> None:
    fake.script = [text(0, "Sunny."), complete(0)]
    [choice] = (await http.post("/v1/chat/completions", json=CHAT)).json()["choices"]
    assert choice["message"] == {"role": "assistant", "content": "Sunny."}
    assert choice["finish_reason"] == "stop"


NAMED = {"type": "function", "function": {"name": "get_weather"}}


@pytest.mark.parametrize(
    ("tool_choice", "reason"), [("auto", "tool_calls"), ("required", "tool_calls"), (NAMED, "stop")]
)
@pytest.mark.parametrize("stream", [False, True])
async def test_finish_reason_by_tool_choice(
    http: httpx.AsyncClient, fake: FakeClient, tool_choice: Any, reason: str, stream: bool
) -> None:
    fake.script = [calls(0, (0, "call_w0", "get_weather", ""), (0, "", "", "{}")), complete(0, TOOL_CALLS)]
    response = await http.post("/v1/chat/completions", json={**CHAT, "tool_choice": tool_choice, "stream": stream})
    if not stream:
        assert response.json()["choices"][0]["finish_reason"] == reason
        return
    events: list[Any] = sse_payloads(response.text)[:-1]
    finishes = [c["choices"][0]["finish_reason"] for c in events if c["choices"][0]["finish_reason"]]
    assert finishes == [reason]


async def test_cut_call_is_length_and_kept_as_generated(http: httpx.AsyncClient, fake: FakeClient) -> None:
    fake.script = [
        calls(0, (0, "call_w0", "get_weather", ""), (0, "", "", '{"ci')),
        complete(0, pb.FINISH_REASON_MAX_TOKENS),
    ]
    [choice] = (await http.post("/v1/chat/completions", json=CHAT)).json()["choices"]
    assert choice["finish_reason"] == "length"
    assert choice["message"]["tool_calls"][0]["function"]["arguments"] == '{"ci'  # never repaired


def deltas_of(events: list[Any], index: int) -> list[dict[str, Any]]:
    return [c["choices"][0]["delta"] for c in events if c.get("choices") and c["choices"][0]["index"] == index]


@pytest.mark.parametrize("n", [1, 2])
async def test_stream_pieces(http: httpx.AsyncClient, fake: FakeClient, n: int) -> None:
    fake.script = [response for i in range(n) for response in two_calls(i)]
    body = {**CHAT, "stream": True, "n": n, "stream_options": {"include_usage": True}}
    events: list[Any] = sse_payloads((await http.post("/v1/chat/completions", json=body)).text)
    assert events[-1] == "[DONE]" and events[-2]["choices"] == [] and events[-2]["usage"]["completion_tokens"] == 2 * n
    for i in range(n):
        deltas = deltas_of(events[:-2], i)
        assert deltas[0] == {"role": "assistant", "content": ""}
        pieces = [piece for d in deltas[1:] for piece in d.get("tool_calls", [])]
        assert all("content" not in d for d in deltas[1:])  # no answer text, no content key
        assert pieces[0] == {
            "index": 0,
            "id": f"call_w{i}",
            "type": "function",
            "function": {"name": "get_weather", "arguments": ""},
        }
        assert pieces[1] == {"index": 0, "function": {"arguments": '{"city":'}}
        first_of_second = next(p for p in pieces if p["index"] == 1)
        assert first_of_second == {
            "index": 1,
            "id": f"call_t{i}",
            "type": "function",
            "function": {"name": "get_time", "arguments": ""},
        }
        for call, expected in enumerate(EXPECTED):
            arguments = "".join(p["function"]["arguments"] for p in pieces if p["index"] == call)
            assert arguments == expected["function"]["arguments"]  # byte for byte the non-streamed arguments
        finishes = [c["choices"][0]["finish_reason"] for c in events[:-2] if c["choices"][0]["index"] == i]
        assert [f for f in finishes if f] == ["tool_calls"] and finishes[-1] == "tool_calls"
        assert deltas[-1] == {}


async def test_non_stream_n_choices_have_their_own_calls(http: httpx.AsyncClient, fake: FakeClient) -> None:
    fake.script = [*two_calls(0), text(1, "No tools needed."), complete(1)]
    choices = (await http.post("/v1/chat/completions", json={**CHAT, "n": 2})).json()["choices"]
    assert choices[0]["message"]["tool_calls"] == EXPECTED
    assert choices[1]["message"] == {"role": "assistant", "content": "No tools needed."}
    assert [c["finish_reason"] for c in choices] == ["tool_calls", "stop"]


async def test_responses_validate_against_openapi(http: httpx.AsyncClient, fake: FakeClient) -> None:
    openapi = (await http.get("/openapi.json")).json()
    fake.script = two_calls()
    validate(openapi, "ChatCompletion", (await http.post("/v1/chat/completions", json=CHAT)).json())
    events: list[Any] = sse_payloads((await http.post("/v1/chat/completions", json={**CHAT, "stream": True})).text)
    for chunk in events[:-1]:
        validate(openapi, "ChatCompletionChunk", chunk)


# The official SDK's helpers over the same scripted output.


class GetWeather(BaseModel):
    city: str


class GetTime(BaseModel):
    pass


class Person(BaseModel):
    name: str
    mood: Literal["happy", "sad"]
    age: int = Field(ge=0, le=150)
    tags: list[str] = Field(min_length=1, max_length=3)


async def test_sdk_parse_fills_parsed_arguments(sdk: openai.AsyncOpenAI, fake: FakeClient) -> None:
    fake.script = two_calls()
    tools = [
        openai.pydantic_function_tool(GetWeather, name="get_weather"),
        openai.pydantic_function_tool(GetTime, name="get_time"),
    ]
    completion = await sdk.chat.completions.parse(model=MODEL_ID, messages=USER, tools=tools, tool_choice="required")  # type: ignore[arg-type]
    message = completion.choices[0].message
    assert message.tool_calls is not None
    assert [c.function.parsed_arguments for c in message.tool_calls] == [GetWeather(city="Paris"), GetTime()]  # type: ignore[union-attr]
    request = fake.requests[0][0]
    assert [t.name for t in request.chat.tools] == ["get_weather", "get_time"]
    assert request.chat.tool_choice.mode == pb.TOOL_CHOICE_MODE_REQUIRED


async def test_sdk_stream_helper_rebuilds_the_calls(sdk: openai.AsyncOpenAI, fake: FakeClient) -> None:
    fake.script = two_calls()
    tools = [
        openai.pydantic_function_tool(GetWeather, name="get_weather"),
        openai.pydantic_function_tool(GetTime, name="get_time"),
    ]
    async with sdk.chat.completions.stream(model=MODEL_ID, messages=USER, tools=tools) as stream:  # type: ignore[arg-type]
        done = [e async for e in stream if e.type == "tool_calls.function.arguments.done"]
        final = await stream.get_final_completion()
    assert [(e.name, e.arguments) for e in done] == [("get_weather", '{"city":"Paris"}'), ("get_time", "{}")]
    rebuilt = [c.model_dump(include={"id", "type", "function"}) for c in final.choices[0].message.tool_calls or []]
    for call in rebuilt:
        call["function"].pop("parsed_arguments")
    assert rebuilt == EXPECTED
    assert final.choices[0].finish_reason == "tool_calls"


async def test_sdk_parse_response_format(sdk: openai.AsyncOpenAI, fake: FakeClient) -> None:
    person = {"name": "Ann", "mood": "happy", "age": 30, "tags": ["a"]}
    fake.script = [text(0, json.dumps(person)), complete(0)]
    completion = await sdk.chat.completions.parse(model=MODEL_ID, messages=USER, response_format=Person)  # type: ignore[arg-type]
    assert completion.choices[0].message.parsed == Person.model_validate(person)
    schema = json.loads(fake.requests[0][0].constraint.json_schema)
    assert schema["properties"]["age"] == {"maximum": 150, "minimum": 0, "title": "Age", "type": "integer"}
    assert schema["additionalProperties"] is False


async def test_sdk_length_finish_raises(sdk: openai.AsyncOpenAI, fake: FakeClient) -> None:
    fake.script = [text(0, '{"name": "A'), complete(0, pb.FINISH_REASON_MAX_TOKENS)]
    with pytest.raises(openai.LengthFinishReasonError):
        await sdk.chat.completions.parse(model=MODEL_ID, messages=USER, response_format=Person, max_tokens=3)  # type: ignore[arg-type]
