"""Structured outputs and tool calling with the official Python SDK's helpers against the real stack on the default
model: parse() into pydantic models, pydantic_function_tool calls (required, named, parallel or not), the stream
helper rebuilding the calls, a conversation with a tool result, vLLM's guided_* extras, and bad inputs."""

from __future__ import annotations

import enum
import json
import re
from typing import Annotated, Any, Literal

import jsonschema
import openai
import pytest
from openai.lib._pydantic import to_strict_json_schema
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam
from pydantic import BaseModel, Field

from tests.e2e.conftest import MODEL_ID, Stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def client(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key="unused", max_retries=0, timeout=120)


def user(text: str) -> list[ChatCompletionMessageParam]:
    return [{"role": "user", "content": text}]


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"
    BLUE = "blue"


class Address(BaseModel):
    city: str = Field(max_length=30)
    country: str = Field(max_length=30)


class Person(BaseModel):
    name: str = Field(max_length=30)
    age: int = Field(ge=18, le=99)
    favorite_color: Color
    address: Address
    # bounded items: a 135M model sampling at temperature 0.8 may otherwise run one string to max_tokens
    hobbies: list[Annotated[str, Field(max_length=20)]] = Field(min_length=2, max_length=3)


PERSON_PROMPT = user("Invent a person who lives in Paris: name, age, favourite colour, address and hobbies, as JSON.")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_parse_into_a_pydantic_model(client: openai.OpenAI, seed: int) -> None:
    completion = client.chat.completions.parse(
        model=MODEL_ID, messages=PERSON_PROMPT, response_format=Person, temperature=0.8, seed=seed, max_tokens=300
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    person = choice.message.parsed
    assert isinstance(person, Person)
    assert 18 <= person.age <= 99 and 2 <= len(person.hobbies) <= 3
    assert isinstance(person.favorite_color, Color)
    content = choice.message.content or ""
    jsonschema.validate(json.loads(content), to_strict_json_schema(Person))
    assert content == json.dumps(json.loads(content), separators=(",", ":"), ensure_ascii=False)  # compact


def test_too_small_max_tokens_raises_length_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.LengthFinishReasonError) as caught:
        client.chat.completions.parse(model=MODEL_ID, messages=PERSON_PROMPT, response_format=Person, max_tokens=5)
    cut = caught.value.completion.choices[0]
    assert cut.finish_reason == "length" and caught.value.completion.usage is not None
    assert caught.value.completion.usage.completion_tokens == 5
    assert (cut.message.content or "").startswith("{")  # what was produced, not repaired


def test_json_object_and_raw_json_schema(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL_ID,
        messages=user("Describe Paris as JSON."),
        response_format={"type": "json_object"},
        max_tokens=200,
    )
    if reply.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(reply.choices[0].message.content or ""), dict)
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}, "confidence": {"type": "number"}},
        "required": ["answer", "confidence"],
        "additionalProperties": False,
    }
    fmt: Any = {"type": "json_schema", "json_schema": {"name": "verdict", "schema": schema}}  # strict absent: enforced
    reply = client.chat.completions.create(
        model=MODEL_ID, messages=user("Is Paris in France?"), response_format=fmt, temperature=0, max_tokens=60
    )
    assert reply.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(reply.choices[0].message.content or ""), schema)


class GetWeather(BaseModel):
    """Get the current weather in a city."""

    city: str = Field(max_length=40)
    unit: Literal["celsius", "fahrenheit"] | None = None


class GetTime(BaseModel):
    """Get the current local time in a timezone."""

    timezone: str = Field(max_length=40)


TOOLS = [openai.pydantic_function_tool(GetWeather), openai.pydantic_function_tool(GetTime)]
WEATHER_PROMPT = user("What is the weather like in Paris today?")
TWO_CITIES = user("What is the weather in Paris and what is the weather in London?")


def calls_of(message: Any) -> list[tuple[str, str]]:
    return [(c.function.name, c.function.arguments) for c in message.tool_calls or []]


def test_required_tool_call_is_parsed(client: openai.OpenAI) -> None:
    completion = client.chat.completions.parse(
        model=MODEL_ID, messages=WEATHER_PROMPT, tools=TOOLS, tool_choice="required", temperature=0, max_tokens=120
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls or []
    assert calls and all(re.fullmatch(r"call_[A-Za-z0-9]+", c.id) for c in calls)
    assert len({c.id for c in calls}) == len(calls)
    for call in calls:
        assert call.type == "function" and call.function.name in ("GetWeather", "GetTime")
        assert isinstance(call.function.parsed_arguments, GetWeather | GetTime)
        schema = to_strict_json_schema(GetWeather if call.function.name == "GetWeather" else GetTime)
        jsonschema.validate(json.loads(call.function.arguments), schema)


class Location(BaseModel):
    city: str = Field(max_length=40)
    country: str = Field(max_length=40)


class GetForecast(BaseModel):
    """Get the weather forecast for a place."""

    location: Location
    days: int = Field(ge=1, le=7)
    unit: Color


def test_tool_parameters_with_defs(client: openai.OpenAI) -> None:
    # pydantic puts nested models and enums in `$defs` and refers to them with `#/$defs/…` pointers
    tool = openai.pydantic_function_tool(GetForecast)
    assert "$defs" in json.dumps(tool)
    completion = client.chat.completions.parse(
        model=MODEL_ID,
        messages=user("Forecast for Paris, 3 days."),
        tools=[tool],
        tool_choice="required",
        max_tokens=120,
    )
    [call, *_] = completion.choices[0].message.tool_calls or []
    assert isinstance(call.function.parsed_arguments, GetForecast)


def test_named_tool_choice_calls_that_tool_and_stops(client: openai.OpenAI) -> None:
    named: Any = {"type": "function", "function": {"name": "GetTime"}}
    completion = client.chat.completions.parse(
        model=MODEL_ID, messages=WEATHER_PROMPT, tools=TOOLS, tool_choice=named, temperature=0, max_tokens=120
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"  # as OpenAI reports a named tool choice
    [call] = choice.message.tool_calls or []
    assert call.function.name == "GetTime" and isinstance(call.function.parsed_arguments, GetTime)


@pytest.mark.parametrize("tool_choice", ["required", "auto"])
def test_stream_helper_rebuilds_the_non_streamed_calls(client: openai.OpenAI, tool_choice: Any) -> None:
    params: dict[str, Any] = {
        "model": MODEL_ID,
        "messages": TWO_CITIES,
        "tools": TOOLS,
        "tool_choice": tool_choice,
        "temperature": 0,
        "seed": 7,
        "max_tokens": 150,
    }
    full = client.chat.completions.parse(**params)
    with client.chat.completions.stream(**params) as stream:
        done = [(e.name, e.arguments) for e in stream if e.type == "tool_calls.function.arguments.done"]
        final = stream.get_final_completion()
    streamed, expected = final.choices[0], full.choices[0]
    assert calls_of(streamed.message) == calls_of(expected.message) == done
    assert streamed.finish_reason == expected.finish_reason
    assert (streamed.message.content or "") == (expected.message.content or "")
    if tool_choice == "required":
        assert done and expected.finish_reason == "tool_calls"
    for a, b in zip(streamed.message.tool_calls or [], expected.message.tool_calls or [], strict=True):
        assert a.function.parsed_arguments == b.function.parsed_arguments


def test_parallel_tool_calls(client: openai.OpenAI) -> None:
    params: dict[str, Any] = {"model": MODEL_ID, "messages": TWO_CITIES, "tools": TOOLS, "tool_choice": "required"}
    allowed = client.chat.completions.create(**params, n=6, temperature=1.0, seed=11, max_tokens=150)
    serial = client.chat.completions.create(
        **params, parallel_tool_calls=False, n=6, temperature=1.0, seed=11, max_tokens=150
    )
    counts = [len(c.message.tool_calls or []) for c in allowed.choices if c.finish_reason == "tool_calls"]
    assert counts and max(counts) >= 2  # several calls in one answer when allowed
    for choice in serial.choices:
        assert choice.finish_reason in ("tool_calls", "length")
        if choice.finish_reason == "tool_calls":
            assert len(choice.message.tool_calls or []) == 1


def test_conversation_with_a_tool_result(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(
        model=MODEL_ID, messages=WEATHER_PROMPT, tools=TOOLS, tool_choice="required", temperature=0, max_tokens=120
    )
    call = (first.choices[0].message.tool_calls or [])[0]
    assert call.type == "function"
    history: list[ChatCompletionMessageParam] = [
        *WEATHER_PROMPT,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.function.name, "arguments": call.function.arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 24 degrees Celsius."},
    ]
    answer = client.chat.completions.create(
        model=MODEL_ID, messages=history, tools=TOOLS, tool_choice="none", temperature=0, max_tokens=60
    )
    choice = answer.choices[0]
    assert choice.message.tool_calls is None and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    without_result = client.chat.completions.create(
        model=MODEL_ID, messages=history[:2], tools=TOOLS, tool_choice="none", max_tokens=1
    )
    assert answer.usage is not None and without_result.usage is not None
    assert answer.usage.prompt_tokens > without_result.usage.prompt_tokens + 5  # the result is in the prompt
    auto = client.chat.completions.create(model=MODEL_ID, messages=history, tools=TOOLS, temperature=0, max_tokens=60)
    assert auto.choices[0].finish_reason in ("stop", "length", "tool_calls")


def test_guided_choice_regex_and_grammar(client: openai.OpenAI) -> None:
    # Whole sentences: the 135M model's best first token for the bare city names is "L" (→ "London").
    choices = [f"The capital of France is {city}." for city in ("London", "Paris", "Berlin")]
    reply = client.chat.completions.create(
        model=MODEL_ID,
        messages=user("What is the capital of France?"),
        extra_body={"guided_choice": choices},
        temperature=0,
    )
    assert reply.choices[0].message.content == choices[1] and reply.choices[0].finish_reason == "stop"
    reply = client.chat.completions.create(
        model=MODEL_ID,
        messages=user("Give me a date."),
        extra_body={"guided_regex": "[0-9]{4}-[0-9]{2}-[0-9]{2}"},  # Rust regex: \d is any Unicode digit
        n=3,
        temperature=1,
        seed=5,
    )
    for choice in reply.choices:
        assert re.fullmatch("[0-9]{4}-[0-9]{2}-[0-9]{2}", choice.message.content or ""), choice.message.content
    reply = client.chat.completions.create(
        model=MODEL_ID,
        messages=user("Say yes or no."),
        extra_body={"structured_outputs": {"grammar": 'start: ("yes" | "no") "!"'}},
        temperature=0,
    )
    assert reply.choices[0].message.content in ("yes!", "no!")
    text = client.completions.create(
        model=MODEL_ID,
        prompt="The capital of France is",
        extra_body={"guided_choice": [" Paris", " Rome"]},
        temperature=0,
    )
    assert text.choices[0].text == " Paris"


ONE_TOOL: list[ChatCompletionToolParam] = [
    {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "bad name", "schema": {}}}},
            "response_format.json_schema.name",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": "{}"}}},
            "response_format.json_schema.schema",
        ),
        ({"response_format": {"type": "yaml"}}, "response_format.type"),
        ({"response_format": {"type": "json_object"}, "tools": ONE_TOOL}, "response_format"),
        ({"tool_choice": "required"}, "tool_choice"),
        (
            {"tools": ONE_TOOL, "tool_choice": {"type": "function", "function": {"name": "g"}}},
            "tool_choice.function.name",
        ),
        ({"tools": [{"type": "code_interpreter"}]}, "tools[0].type"),
        ({"guided_choice": [], "max_tokens": 2}, "guided_choice"),
        ({"guided_regex": "a", "guided_choice": ["a"]}, "guided_choice"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        # rejected by the inference service (the grammar compiler), named by the bridge
        ({"guided_regex": "(unclosed"}, "guided_regex"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nonsense"}}}},
            "response_format.json_schema.schema",
        ),
        ({"guided_grammar": "start: undefined_rule"}, "guided_grammar"),
    ],
)
def test_bad_inputs_raise_bad_request(client: openai.OpenAI, extra: dict[str, Any], param: str) -> None:
    body: dict[str, Any] = {"messages": user("hi"), "max_tokens": 2, **extra}
    vllm = {name: body.pop(name) for name in list(body) if name.startswith(("guided_", "structured_"))}
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL_ID, **body, extra_body=vllm)
    assert caught.value.status_code == 400 and caught.value.param == param, caught.value.message


def test_bad_schema_streamed_is_a_400_before_the_stream(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=MODEL_ID, messages=user("hi"), stream=True, extra_body={"guided_regex": "(unclosed"}
        )
    assert caught.value.param == "guided_regex"
