"""The tool-call parser (streamed text → answer text + call pieces) and the tool prompt for templates without tools."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference_service.engine.tool_calls import ToolCallParser, calls_text, tool_prompt, with_tool_prompt
from inference_service.engine.types import ChatMessage, Tool, ToolCall, ToolCallDelta


def _parse(pieces: list[str]) -> tuple[str, dict[int, dict[str, str]], int, list[ToolCallDelta]]:
    parser = ToolCallParser()
    text, deltas = "", []
    for piece in pieces:
        out, ds = parser.push(piece)
        text += out
        deltas += ds
    text += parser.flush()
    calls: dict[int, dict[str, str]] = {}
    for d in deltas:
        if d.name:
            assert d.index not in calls and d.id.startswith("call_") and not d.arguments  # first piece of a call
            calls[d.index] = {"name": d.name, "arguments": ""}
        else:
            assert not d.id and d.index in calls
            calls[d.index]["arguments"] += d.arguments
    return text, calls, parser.calls, deltas


def _split(text: str, rng: random.Random) -> list[str]:
    cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randint(0, 12)))) if len(text) > 1 else []
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]


CALLS = [
    {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}},
    {"name": "add", "arguments": {"a": 1, "b": [2, {"c": '}]\\"x'}]}},
]


@pytest.mark.parametrize("seed", range(20))
def test_calls_and_text_survive_any_chunking(seed: int) -> None:
    rng = random.Random(seed)
    body = json.dumps(CALLS, separators=(",", ":"))
    text, calls, complete, _ = _parse(_split(f"Let me check. <tool_call>{body}</tool_call>", rng))
    assert text == "Let me check. "
    assert complete == 2
    assert [c["name"] for c in calls.values()] == ["get_weather", "add"]
    # the arguments come through byte for byte as generated
    assert [c["arguments"] for c in calls.values()] == [
        json.dumps(c["arguments"], separators=(",", ":")) for c in CALLS
    ]


def test_text_without_calls_and_a_held_back_tag_start() -> None:
    parser = ToolCallParser()
    assert parser.push("a < b and <tool") == ("a < b and ", [])  # "<tool" may start the tag: held
    assert parser.push("s> are") == ("<tools> are", [])  # it did not
    assert parser.push(" <tool_c") == (" ", [])
    assert parser.flush() == "<tool_c"  # the end came first: it was text after all
    assert parser.calls == 0


def test_cut_inside_a_call_keeps_what_was_generated() -> None:
    text, calls, complete, _ = _parse(['<tool_call>[{"name":"f","arguments":{"x":"ab'])
    assert text == "" and complete == 0
    assert calls == {0: {"name": "f", "arguments": '{"x":"ab'}}


def test_argument_pieces_of_one_push_are_merged() -> None:
    _, _, _, deltas = _parse(['<tool_call>[{"name":"f","arguments":{"x":1}}]</tool_call>'])
    assert deltas == [ToolCallDelta(0, deltas[0].id, "f"), ToolCallDelta(0, arguments='{"x":1}')]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.from_regex(r"[A-Za-z0-9_-]{1,12}", fullmatch=True),
            st.dictionaries(st.text(max_size=5), st.recursive(st.none() | st.text(max_size=6), st.lists)),
        ),
        min_size=1,
        max_size=3,
    ),
    st.text(max_size=20).filter(lambda t: "<tool_call>" not in t),
    st.integers(0, 2**32),
)
def test_property_any_calls_any_chunking(calls: list[tuple[str, dict[str, object]]], prefix: str, seed: int) -> None:
    items = [{"name": n, "arguments": a} for n, a in calls]
    text = f"{prefix}<tool_call>{json.dumps(items, separators=(',', ':'))}</tool_call>"
    out, parsed, complete, _ = _parse(_split(text, random.Random(seed)))
    assert out == prefix and complete == len(calls)
    assert [(c["name"], json.loads(c["arguments"])) for c in parsed.values()] == calls


def test_tool_prompt_and_history_for_templates_without_tools() -> None:
    weather = Tool("get_weather", "Weather in a city", {"type": "object", "properties": {"city": {"type": "string"}}})
    history = [
        ChatMessage("user", "Weather in Paris?"),
        ChatMessage("assistant", "", tool_calls=(ToolCall("call_1", "get_weather", '{"city": "Paris"}'),)),
        ChatMessage("tool", '{"temp": 21}', tool_call_id="call_1"),
    ]
    out = with_tool_prompt(history, [weather])
    assert out[0] == ChatMessage("system", tool_prompt([weather]))
    assert '<tools>[{"name": "get_weather", "description": "Weather in a city", "parameters": {' in out[0].content
    assert out[2] == ChatMessage(
        "assistant", '<tool_call>[{"name": "get_weather", "arguments": {"city": "Paris"}}]</tool_call>'
    )
    assert out[3] == ChatMessage("user", '<tool_response>\n{"temp": 21}\n</tool_response>')
    # a system message keeps its text, the tool prompt follows it; without tools nothing is added
    system = with_tool_prompt([ChatMessage("system", "Be brief."), history[0]], [weather])[0]
    assert system.content.startswith("Be brief.\n\nYou are an expert in composing functions.")
    assert with_tool_prompt(history[:1], []) == history[:1]
    assert (
        calls_text([ToolCall("c", "f", "not json")])
        == '<tool_call>[{"name": "f", "arguments": "not json"}]</tool_call>'
    )
