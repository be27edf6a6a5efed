"""Constrained decoding and tool calls over raw gRPC, on the real default model.

The property test draws random schemas (objects, arrays, enums, bounded numbers, strings with patterns or lengths)
and samples completions for each: every completion that ends validates against its schema (jsonschema).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from typing import Any, TypeAlias

import grpc
import jsonschema
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inference_service.api.v1 import generation_pb2 as pb
from inference_service.api.v1 import generation_pb2_grpc
from tests.e2e.conftest import MODEL_ID, Stack

pytestmark = pytest.mark.e2e
Gen: TypeAlias = generation_pb2_grpc.GenerationServiceStub


@pytest.fixture(scope="module")
def gen(stack: Stack) -> Iterator[Gen]:
    with grpc.insecure_channel(stack.grpc_target) as channel:
        yield Gen(channel)


def chat(text: str, **kw: Any) -> pb.GenerateRequest:
    messages = [pb.ChatMessage(role="user", content=text)]
    chat_kw = {k: kw.pop(k) for k in ("tools", "tool_choice", "parallel_tool_calls") if k in kw}
    kw.setdefault("sampling", pb.SamplingParams(temperature=0.0))
    kw.setdefault("stopping", pb.StoppingCriteria(max_tokens=200))
    return pb.GenerateRequest(model=MODEL_ID, chat=pb.ChatInput(messages=messages, **chat_kw), **kw)


def run(gen: Gen, req: pb.GenerateRequest) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for resp in gen.Generate(req, timeout=300):
        choice = out.setdefault(resp.index, {"text": "", "deltas": [], "complete": None})
        if resp.HasField("chunk"):
            choice["text"] += resp.chunk.text
            choice["deltas"] += list(resp.chunk.tool_calls)
        else:
            choice["complete"] = resp.complete
    return out


# random schemas --------------------------------------------------------------------------------------------------
NAMES = st.from_regex(r"[a-z]{1,6}", fullmatch=True)
PATTERNS = ["^[a-z]{1,8}$", "^[A-Z][a-z]{0,5}$", "^[0-9]{3}-[0-9]{2}$", "^(red|green|blue)$"]


@st.composite
def bounded_number(draw: st.DrawFn) -> dict[str, Any]:
    low = draw(st.integers(-1000, 1000))
    high = draw(st.integers(low, low + 2000))
    return {"type": draw(st.sampled_from(["integer", "number"])), "minimum": low, "maximum": high}


LEAVES = st.one_of(
    bounded_number(),
    st.builds(lambda p: {"type": "string", "pattern": p}, st.sampled_from(PATTERNS)),
    st.builds(lambda n: {"type": "string", "maxLength": n}, st.integers(1, 12)),
    st.builds(
        lambda e: {"enum": e}, st.lists(st.one_of(NAMES, st.integers(-5, 5)), min_size=1, max_size=4, unique=True)
    ),
    st.just({"type": "boolean"}),
)


def _object(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        props = draw(st.dictionaries(NAMES, children, min_size=1, max_size=4))
        required = draw(st.lists(st.sampled_from(sorted(props)), unique=True))
        return {"type": "object", "properties": props, "required": required, "additionalProperties": False}

    return build()


def _array(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        low = draw(st.integers(0, 2))
        return {"type": "array", "items": draw(children), "minItems": low, "maxItems": draw(st.integers(low, 4))}

    return build()


SCHEMAS = st.recursive(LEAVES, lambda children: st.one_of(_object(children), _array(children)), max_leaves=6).map(
    lambda s: s if s.get("type") == "object" else {"type": "object", "properties": {"value": s}, "required": ["value"]}
)


@settings(max_examples=20, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(schema=SCHEMAS, seed=st.integers(0, 2**31))
def test_property_sampled_completions_validate(gen: Gen, schema: dict, seed: int) -> None:
    req = chat(
        "Reply with a JSON object.",
        constraint=pb.Constraint(json_schema=json.dumps(schema)),
        sampling=pb.SamplingParams(temperature=1.0, seed=seed),
        stopping=pb.StoppingCriteria(max_tokens=300),
        n=2,
    )
    for choice in run(gen, req).values():
        reason = choice["complete"].finish_reason
        assert reason in (pb.FINISH_REASON_EOS, pb.FINISH_REASON_MAX_TOKENS)
        if reason == pb.FINISH_REASON_EOS:
            jsonschema.validate(json.loads(choice["text"]), schema)
            outside_strings = re.sub(r'"(?:[^"\\]|\\.)*"', "", choice["text"])
            assert not re.search(r"\s", outside_strings)  # compact: no whitespace between JSON tokens


def test_choice_regex_and_json_object(gen: Gen) -> None:
    (out,) = run(
        gen, chat("Is the sky blue?", constraint=pb.Constraint(choice=pb.ChoiceList(choices=["yes", "no"])))
    ).values()
    assert out["text"] in ("yes", "no") and out["complete"].finish_reason == pb.FINISH_REASON_EOS
    (out,) = run(gen, chat("Give a code.", constraint=pb.Constraint(regex="[0-9]{3}-[A-Z]{2}"))).values()
    assert re.fullmatch("[0-9]{3}-[A-Z]{2}", out["text"])
    (out,) = run(gen, chat("A JSON object about a cat.", constraint=pb.Constraint(json_object=True))).values()
    if out["complete"].finish_reason == pb.FINISH_REASON_EOS:
        assert isinstance(json.loads(out["text"]), dict)
    else:  # cut by max_tokens: the text is what was produced, never repaired
        assert out["text"].startswith("{") and out["complete"].usage.completion_tokens == 200


def test_max_tokens_cut_is_length_with_the_partial_text(gen: Gen) -> None:
    schema = {"type": "object", "properties": {"story": {"type": "string"}}, "required": ["story"]}
    req = chat("Tell a story.", constraint=pb.Constraint(json_schema=json.dumps(schema)))
    req.stopping.max_tokens = 4
    (out,) = run(gen, req).values()
    assert out["complete"].finish_reason == pb.FINISH_REASON_MAX_TOKENS
    assert out["text"].startswith('{"story":"') or '{"story":"'.startswith(out["text"])


WEATHER = pb.Tool(
    name="get_weather",
    description="Get the current weather in a city",
    parameters_json=json.dumps(
        {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 20}, "unit": {"enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"],
            "additionalProperties": False,
        }
    ),
)
CLOCK = pb.Tool(name="get_time", description="Get the time in a city", parameters_json="")


@pytest.mark.parametrize(
    "choice",
    [pb.ToolChoice(function_name="get_weather"), pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_REQUIRED)],
    ids=["named", "required"],
)
def test_tool_calls_stream_as_pieces(gen: Gen, choice: pb.ToolChoice) -> None:
    req = chat("What is the weather in Paris?", tools=[WEATHER, CLOCK], tool_choice=choice)
    (out,) = run(gen, req).values()
    assert out["text"] == "" and out["complete"].finish_reason == pb.FINISH_REASON_TOOL_CALLS
    calls: dict[int, dict[str, str]] = {}
    for d in out["deltas"]:
        if d.index not in calls:  # the first piece: id and name, no arguments
            assert d.id.startswith("call_") and d.name and not d.arguments
            calls[d.index] = {"name": d.name, "arguments": ""}
        else:
            assert not d.id and not d.name
            calls[d.index]["arguments"] += d.arguments
    assert sorted(calls) == list(range(len(calls))) and calls
    for call in calls.values():
        assert call["name"] in ("get_weather", "get_time")
        arguments = json.loads(call["arguments"])
        if call["name"] == "get_weather":
            jsonschema.validate(arguments, json.loads(WEATHER.parameters_json))
    if choice.HasField("function_name"):
        assert [c["name"] for c in calls.values()] == ["get_weather"]


def test_auto_may_answer_in_text_and_none_never_calls(gen: Gen) -> None:
    for mode in (pb.TOOL_CHOICE_MODE_AUTO, pb.TOOL_CHOICE_MODE_NONE):
        req = chat("Tell me a joke.", tools=[WEATHER], tool_choice=pb.ToolChoice(mode=mode))
        req.stopping.max_tokens = 40
        (out,) = run(gen, req).values()
        assert "<tool_call>" not in out["text"]
        if mode == pb.TOOL_CHOICE_MODE_NONE:
            assert not out["deltas"] and out["complete"].finish_reason != pb.FINISH_REASON_TOOL_CALLS


def test_constrained_rows_leave_unconstrained_rows_unchanged(gen: Gen) -> None:
    """Greedy text of a free request is the same alone and in the same steps as constrained ones."""
    free = chat("Write a short poem about the sea.")
    free.stopping.max_tokens = 40
    (alone,) = run(gen, free).values()
    constrained = chat("A JSON object.", constraint=pb.Constraint(json_object=True), n=3)
    constrained.sampling.temperature = 1.0
    results: list[dict[int, dict[str, Any]]] = []
    thread = threading.Thread(target=lambda: results.append(run(gen, constrained)))
    thread.start()
    (together,) = run(gen, free).values()
    thread.join()
    assert together["text"] == alone["text"]
    assert len(results[0]) == 3


@pytest.mark.parametrize(
    ("req", "param"),
    [
        (chat("x", constraint=pb.Constraint(json_schema='{"type": "nope"}')), "constraint"),
        (chat("x", constraint=pb.Constraint(json_schema="{")), "constraint"),
        (chat("x", constraint=pb.Constraint(regex="(")), "constraint"),
        (chat("x", constraint=pb.Constraint(lark="start: nowhere")), "constraint"),
        (chat("x", constraint=pb.Constraint(choice=pb.ChoiceList())), "constraint.choice"),
        (chat("x", constraint=pb.Constraint(json_object=True), stopping=pb.StoppingCriteria(stop=["}"])), "stop"),
        (chat("x", tool_choice=pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_REQUIRED)), "tool_choice"),
        (chat("x", tools=[WEATHER], tool_choice=pb.ToolChoice(function_name="nope")), "tool_choice"),
        (chat("x", tools=[pb.Tool(name="bad name!")]), "tools[0].name"),
        (chat("x", tools=[pb.Tool(name="f", parameters_json="[1]")]), "tools[0].parameters"),
        (chat("x", tools=[WEATHER], constraint=pb.Constraint(json_object=True)), "constraint"),
    ],
)
def test_bad_constraints_and_tools_are_invalid_argument(gen: Gen, req: pb.GenerateRequest, param: str) -> None:
    with pytest.raises(grpc.RpcError) as err:
        run(gen, req)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details()
    status = rpc_status.from_call(err.value)
    assert status is not None
    bad = error_details_pb2.BadRequest()
    next(d for d in status.details if d.Is(bad.DESCRIPTOR)).Unpack(bad)
    assert bad.field_violations[0].field == param
    # the service keeps serving
    (out,) = run(gen, chat("Say yes.", constraint=pb.Constraint(choice=pb.ChoiceList(choices=["yes"])))).values()
    assert out["text"] == "yes"
