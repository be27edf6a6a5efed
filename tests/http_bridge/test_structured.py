"""Output constraints and tools on the request side: what is accepted, what each maps to in the GenerateRequest, and
every new field sent wrong (400 in OpenAI's shape naming the param)."""

from __future__ import annotations

import json
from typing import Any

import grpc
import httpx
import pytest

from http_bridge.schemas.chat import ChatCompletionRequest
from http_bridge.schemas.completions import CompletionRequest
from http_bridge.translate import chat, completions
from inference_service.api.v1 import generation_pb2 as pb
from tests.http_bridge.fakes import FakeClient, rpc_error
from tests.http_bridge.test_errors import _packed

pytestmark = pytest.mark.anyio

USER = [{"role": "user", "content": "hi"}]
CHAT: dict[str, Any] = {"model": "m", "messages": USER}
TEXT: dict[str, Any] = {"model": "m", "prompt": "hi"}
SCHEMA: dict[str, Any] = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
WEATHER: dict[str, Any] = {"type": "function", "function": {"name": "get_weather", "parameters": SCHEMA}}
TIME: dict[str, Any] = {"type": "function", "function": {"name": "get_time", "description": "now", "strict": True}}
CALL: dict[str, Any] = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"a":1}'}}


def chat_request(**fields: Any) -> pb.GenerateRequest:
    return chat.to_generate_request(ChatCompletionRequest.model_validate({**CHAT, **fields}), "rid")


def text_request(**fields: Any) -> pb.GenerateRequest:
    (request,) = completions.to_generate_requests(CompletionRequest.model_validate({**TEXT, **fields}), "rid")
    return request


COMPACT_SCHEMA = json.dumps(SCHEMA, separators=(",", ":"))
CONSTRAINTS: list[tuple[dict[str, Any], pb.Constraint]] = [
    ({"response_format": {"type": "json_object"}}, pb.Constraint(json_object=True)),
    (
        {"response_format": {"type": "json_schema", "json_schema": {"name": "a-b_1", "schema": SCHEMA}}},
        pb.Constraint(json_schema=COMPACT_SCHEMA),
    ),
    (
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "x", "description": "d", "schema": SCHEMA, "strict": False},
            }
        },
        pb.Constraint(json_schema=COMPACT_SCHEMA),
    ),
    ({"guided_json": SCHEMA}, pb.Constraint(json_schema=COMPACT_SCHEMA)),
    ({"guided_json": json.dumps(SCHEMA, indent=2)}, pb.Constraint(json_schema=COMPACT_SCHEMA)),
    ({"guided_regex": r"\d{3}"}, pb.Constraint(regex=r"\d{3}")),
    ({"guided_choice": ["yes", "no"]}, pb.Constraint(choice=pb.ChoiceList(choices=["yes", "no"]))),
    ({"guided_grammar": 'start: "a"+'}, pb.Constraint(lark='start: "a"+')),
    ({"structured_outputs": {"json": SCHEMA}}, pb.Constraint(json_schema=COMPACT_SCHEMA)),
    ({"structured_outputs": {"json": json.dumps(SCHEMA)}}, pb.Constraint(json_schema=COMPACT_SCHEMA)),
    ({"structured_outputs": {"json_object": True}}, pb.Constraint(json_object=True)),
    ({"structured_outputs": {"regex": "[a-z]+"}}, pb.Constraint(regex="[a-z]+")),
    ({"structured_outputs": {"choice": ["a"]}}, pb.Constraint(choice=pb.ChoiceList(choices=["a"]))),
    ({"structured_outputs": {"grammar": 'start: "x"'}}, pb.Constraint(lark='start: "x"')),
]


@pytest.mark.parametrize(("fields", "expected"), CONSTRAINTS)
def test_constraint_maps_the_same_for_chat_and_text(fields: dict[str, Any], expected: pb.Constraint) -> None:
    from_chat, from_text = chat_request(**fields), text_request(**fields)
    assert from_chat.HasField("constraint") and from_chat.constraint == expected
    assert from_text.constraint == expected
    assert not from_chat.constraint.whitespace_flexible


@pytest.mark.parametrize("fields", [{}, {"response_format": {"type": "text"}}, {"response_format": None}])
def test_no_constraint(fields: dict[str, Any]) -> None:
    assert not chat_request(**fields).HasField("constraint")
    assert not text_request(**fields).HasField("constraint")


def test_tools_and_choices_map_to_chat_input() -> None:
    req = chat_request(tools=[WEATHER, TIME])
    assert [(t.name, t.description) for t in req.chat.tools] == [("get_weather", ""), ("get_time", "now")]
    assert json.loads(req.chat.tools[0].parameters_json) == SCHEMA
    assert req.chat.tools[1].parameters_json == ""  # absent: any JSON object
    assert req.chat.tool_choice.WhichOneof("choice") is None  # the service's default: auto
    assert not req.chat.HasField("parallel_tool_calls")
    assert not req.HasField("constraint")
    for choice, mode in [("auto", pb.TOOL_CHOICE_MODE_AUTO), ("required", pb.TOOL_CHOICE_MODE_REQUIRED)]:
        assert chat_request(tools=[WEATHER], tool_choice=choice).chat.tool_choice.mode == mode
    named = chat_request(tools=[WEATHER, TIME], tool_choice={"type": "function", "function": {"name": "get_time"}})
    assert named.chat.tool_choice.function_name == "get_time"
    serial = chat_request(tools=[WEATHER], parallel_tool_calls=False)
    assert serial.chat.HasField("parallel_tool_calls") and not serial.chat.parallel_tool_calls


def test_tool_choice_none_sends_no_tools_so_a_constraint_may_apply() -> None:
    req = chat_request(tools=[WEATHER], tool_choice="none", response_format={"type": "json_object"})
    assert list(req.chat.tools) == [] and req.constraint.json_object
    assert list(chat_request(tools=[WEATHER], tool_choice="none").chat.tools) == []


def test_conversation_with_calls_and_results() -> None:
    messages = [
        *USER,
        {"role": "assistant", "content": None, "tool_calls": [CALL, {**CALL, "id": "call_2"}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "rain"}]},
        {"role": "assistant", "tool_calls": [{**CALL, "id": "call_3"}]},  # content may be absent
        {"role": "tool", "tool_call_id": "call_3", "content": "snow"},
    ]
    req = chat_request(messages=messages, tools=[WEATHER])
    got = [
        (m.role, m.content, [(c.id, c.name, c.arguments) for c in m.tool_calls], m.tool_call_id)
        for m in req.chat.messages
    ]
    call = ("get_weather", '{"a":1}')
    assert got == [
        ("user", "hi", [], ""),
        ("assistant", "", [("call_1", *call), ("call_2", *call)], ""),
        ("tool", "sunny", [], "call_1"),
        ("tool", "rain", [], "call_2"),
        ("assistant", "", [("call_3", *call)], ""),
        ("tool", "snow", [], "call_3"),
    ]


SCHEMA_FORMAT: dict[str, Any] = {"type": "json_schema", "json_schema": {"name": "n", "schema": SCHEMA}}
BAD_CHAT: list[tuple[dict[str, Any], str, str | None]] = [
    # response_format
    ({"response_format": {"type": "xml"}}, "response_format.type", None),
    ({"response_format": "json"}, "response_format", None),
    ({"response_format": {"type": "json_schema"}}, "response_format.json_schema", None),
    (
        {"response_format": {"type": "json_schema", "json_schema": {"schema": SCHEMA}}},
        "response_format.json_schema.name",
        None,
    ),
    (
        {"response_format": {"type": "json_schema", "json_schema": {"name": "has space", "schema": SCHEMA}}},
        "response_format.json_schema.name",
        None,
    ),
    (
        {"response_format": {"type": "json_schema", "json_schema": {"name": "x" * 65, "schema": SCHEMA}}},
        "response_format.json_schema.name",
        None,
    ),
    (
        {"response_format": {"type": "json_schema", "json_schema": {"name": "n"}}},
        "response_format.json_schema.schema",
        None,
    ),
    (
        {"response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": [1]}}},
        "response_format.json_schema.schema",
        None,
    ),
    (
        {"response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": SCHEMA, "strict": "yes"}}},
        "response_format.json_schema.strict",
        None,
    ),
    # vLLM extras
    ({"guided_json": "{not json"}, "guided_json", None),
    ({"guided_json": "[1, 2]"}, "guided_json", None),
    ({"guided_json": 5}, "guided_json", None),
    ({"guided_regex": ""}, "guided_regex", None),
    ({"guided_regex": 5}, "guided_regex", None),
    ({"guided_choice": []}, "guided_choice", None),
    ({"guided_choice": "yes"}, "guided_choice", None),
    ({"guided_choice": ["a", 1]}, "guided_choice[1]", None),
    ({"guided_grammar": ""}, "guided_grammar", None),
    ({"structured_outputs": {}}, "structured_outputs", None),
    ({"structured_outputs": {"regex": "a", "choice": ["a"]}}, "structured_outputs", None),
    ({"structured_outputs": {"structural_tag": "x"}}, "structured_outputs.structural_tag", None),
    ({"structured_outputs": {"json": "nope"}}, "structured_outputs.json", None),
    ({"structured_outputs": {"choice": []}}, "structured_outputs.choice", None),
    ({"structured_outputs": "json"}, "structured_outputs", None),
    # one constraint per request
    ({"response_format": {"type": "json_object"}, "guided_regex": "a"}, "guided_regex", None),
    ({"guided_choice": ["a"], "guided_regex": "a"}, "guided_choice", None),
    ({"structured_outputs": {"regex": "a"}, "guided_json": SCHEMA}, "guided_json", None),
    # tools
    ({"tools": "get_weather"}, "tools", None),
    ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0].type", "unsupported_value"),
    ({"tools": [{"function": {"name": "f"}}]}, "tools[0].type", None),
    ({"tools": [{"type": "function"}]}, "tools[0].function", None),
    ({"tools": [{"type": "function", "function": {}}]}, "tools[0].function.name", None),
    ({"tools": [{"type": "function", "function": {"name": "a.b"}}]}, "tools[0].function.name", None),
    (
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": "{}"}}]},
        "tools[0].function.parameters",
        None,
    ),
    ({"tools": [{"type": "function", "function": {"name": "f", "strict": "no"}}]}, "tools[0].function.strict", None),
    ({"tools": [WEATHER, WEATHER]}, "tools[1].function.name", None),
    ({"tools": [TIME] * 129}, "tools", None),
    # tool_choice
    ({"tool_choice": "required"}, "tool_choice", None),
    ({"tool_choice": {"type": "function", "function": {"name": "get_time"}}}, "tool_choice", None),
    ({"tools": [WEATHER], "tool_choice": "any"}, "tool_choice", None),
    ({"tools": [WEATHER], "tool_choice": {"type": "function"}}, "tool_choice", None),
    (
        {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "get_time"}}},
        "tool_choice.function.name",
        None,
    ),
    ({"tools": [WEATHER], "parallel_tool_calls": "no"}, "parallel_tool_calls", None),
    # tools together with an output constraint
    ({"tools": [WEATHER], "response_format": {"type": "json_object"}}, "response_format", None),
    ({"tools": [WEATHER], "tool_choice": "required", "guided_regex": "a"}, "guided_regex", None),
    # the conversation
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id", None),
    ({"messages": [{"role": "tool", "tool_call_id": "", "content": "x"}]}, "messages[0].tool_call_id", None),
    (
        {"messages": [*USER, {"role": "tool", "tool_call_id": "call_1", "content": "x"}]},
        "messages[1].tool_call_id",
        None,
    ),
    ({"messages": [{"role": "tool", "tool_call_id": "call_1"}]}, "messages[0].content", None),
    ({"messages": [{"role": "user", "content": "x", "tool_calls": [CALL]}]}, "messages[0].tool_calls", None),
    (
        {
            "messages": [
                *USER,
                {"role": "assistant", "tool_calls": [CALL]},
                {"role": "tool", "tool_call_id": "call_9", "content": "x"},
            ]
        },
        "messages[2].tool_call_id",
        None,
    ),
    (
        {"messages": [{"role": "assistant", "tool_calls": [{"type": "function", "function": CALL["function"]}]}]},
        "messages[0].tool_calls[0].id",
        None,
    ),
    (
        {
            "messages": [
                {"role": "assistant", "tool_calls": [{**CALL, "function": {"name": "f", "arguments": {"a": 1}}}]}
            ]
        },
        "messages[0].tool_calls[0].function.arguments",
        None,
    ),
    (
        {"messages": [{"role": "assistant", "tool_calls": [{**CALL, "type": "custom"}]}]},
        "messages[0].tool_calls[0].type",
        None,
    ),
    ({"messages": [{"role": "assistant", "tool_calls": "f"}]}, "messages[0].tool_calls", None),
]


@pytest.mark.parametrize(("fields", "param", "code"), BAD_CHAT)
async def test_bad_chat_field_is_400_naming_it(
    http: httpx.AsyncClient, fake: FakeClient, fields: dict[str, Any], param: str, code: str | None
) -> None:
    response = await http.post("/v1/chat/completions", json={**CHAT, **fields})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code), error
    assert param in error["message"]
    assert fake.requests == []


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "n"}}},
            "response_format.json_schema.schema",
        ),
        ({"guided_json": "{"}, "guided_json"),
        ({"guided_choice": []}, "guided_choice"),
        ({"structured_outputs": {"regex": "a", "grammar": "b"}}, "structured_outputs"),
        ({"guided_regex": "a", "guided_grammar": "b"}, "guided_grammar"),
        ({"tools": [WEATHER]}, None),  # chat only: ignored like any unknown field
    ],
)
async def test_bad_text_completion_field_is_400(
    http: httpx.AsyncClient, fields: dict[str, Any], param: str | None
) -> None:
    response = await http.post("/v1/completions", json={**TEXT, **fields})
    if param is None:
        assert response.status_code == 200, response.text
        return
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_conflict_message_names_both_fields() -> None:
    with pytest.raises(ValueError, match="'guided_json' and 'guided_regex'"):
        ChatCompletionRequest.model_validate({**CHAT, "guided_json": SCHEMA, "guided_regex": "a"})


@pytest.mark.parametrize(
    "fields",
    [
        {"tool_choice": "none"},  # harmless without tools
        {"tools": []},
        {"tools": [WEATHER], "tool_choice": "none", "response_format": SCHEMA_FORMAT},
        {"tools": [WEATHER], "parallel_tool_calls": True, "tool_choice": "auto"},
        {"parallel_tool_calls": False},
        {"tools": [{**WEATHER, "function": {**WEATHER["function"], "strict": True}}]},
        {"response_format": SCHEMA_FORMAT, "n": 2, "stream": True},
        {"guided_json": SCHEMA, "guided_decoding_backend": "xgrammar"},  # vLLM's backend choice: ignored
        {
            "messages": [
                *USER,
                {"role": "assistant", "content": "", "tool_calls": [CALL]},
                {"role": "tool", "tool_call_id": "call_1", "content": "x"},
            ]
        },
    ],
)
async def test_accepted(http: httpx.AsyncClient, fields: dict[str, Any]) -> None:
    response = await http.post("/v1/chat/completions", json={**CHAT, **fields})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("path", "fields", "param"),
    [
        ("/v1/chat/completions", {"response_format": SCHEMA_FORMAT}, "response_format.json_schema.schema"),
        ("/v1/chat/completions", {"structured_outputs": {"regex": "("}}, "structured_outputs.regex"),
        ("/v1/chat/completions", {"guided_grammar": "start"}, "guided_grammar"),
        ("/v1/chat/completions", {"tools": [WEATHER]}, "tools"),
        ("/v1/completions", {"guided_regex": "("}, "guided_regex"),
        ("/v1/completions", {"response_format": {"type": "json_object"}}, "response_format"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_service_rejection_names_the_request_field(
    http: httpx.AsyncClient, fake: FakeClient, path: str, fields: dict[str, Any], param: str, stream: bool
) -> None:
    # The service names the proto field (`constraint`); the bridge names the field the constraint came from.
    from google.rpc import error_details_pb2

    violation = error_details_pb2.BadRequest(field_violations=[{"field": "constraint", "description": "bad"}])
    message = "invalid regex constraint: unclosed group"
    fake.script = [rpc_error(grpc.StatusCode.INVALID_ARGUMENT, message, _packed(violation))]
    base = CHAT if "chat" in path else TEXT
    response = await http.post(path, json={**base, **fields, "stream": stream})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["message"], error["param"], error["type"]) == (message, param, "invalid_request_error")


async def test_other_service_params_pass_through(http: httpx.AsyncClient, fake: FakeClient) -> None:
    from google.rpc import error_details_pb2

    violation = error_details_pb2.BadRequest(field_violations=[{"field": "max_tokens", "description": "bad"}])
    fake.script = [rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "too many", _packed(violation))]
    response = await http.post("/v1/chat/completions", json={**CHAT, "guided_regex": "a"})
    assert response.json()["error"]["param"] == "max_tokens"
