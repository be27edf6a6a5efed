"""The tool-call format in one place: the prompt that offers tools, the grammar of calls, and the parser that
turns calls into pieces.

Calls are written `<tool_call>[{"name": "f", "arguments": {…}}, …]</tool_call>`: the format of the tool prompt
below (the one SmolLM2 was trained on, with tools listed inside `<tools>…</tools>`), and the language the tool-call
grammar below enforces (compiled by engine/constraints.py), so the parser here reads constrained, compact JSON.
"""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Sequence
from typing import Any

from inference_service.engine.constraints import COMPACT_JSON
from inference_service.engine.types import (
    ChatMessage,
    Constraint,
    ConstraintKind,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    Tools,
)

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"

TOOL_PROMPT = """You are an expert in composing functions. You are given a question and a set of possible functions.
Based on the question, you will need to make one or more function/tool calls to achieve the purpose.
If none of the functions can be used, answer the question in plain text instead.

You have access to the following tools:
<tools>{tools}</tools>

To call tools, answer with the calls only, in this format:
<tool_call>[{{"name": "func_name1", "arguments": {{"argument1": "value1", "argument2": "value2"}}}}]</tool_call>"""

_ALPHABET = string.ascii_letters + string.digits


def call_id() -> str:
    return "call_" + "".join(secrets.choice(_ALPHABET) for _ in range(24))


def tool_specs(tools: Sequence[Tool]) -> list[dict[str, Any]]:
    """Tools as chat templates receive them (transformers' `tools=` argument)."""
    return [
        {
            "type": "function",
            "function": {
                "name": t.name,
                "description": t.description,
                "parameters": t.parameters if t.parameters is not None else {"type": "object"},
            },
        }
        for t in tools
    ]


def tool_prompt(tools: Sequence[Tool]) -> str:
    return TOOL_PROMPT.format(tools=json.dumps([spec["function"] for spec in tool_specs(tools)]))


def calls_text(calls: Sequence[ToolCall]) -> str:
    """An assistant's earlier calls as the model writes them."""
    items = []
    for call in calls:
        try:
            arguments = json.loads(call.arguments) if call.arguments else {}
        except ValueError:
            arguments = call.arguments  # shown as the string it is
        items.append({"name": call.name, "arguments": arguments})
    return f"{CALL_OPEN}{json.dumps(items)}{CALL_CLOSE}"


def with_tool_prompt(messages: Sequence[ChatMessage], tools: Sequence[Tool]) -> list[ChatMessage]:
    """For templates that ignore tools: the tool prompt ends the system message (added when there is none), calls
    become the assistant's text and tool results user turns inside `<tool_response>` (templates of this kind
    often accept only system/user/assistant)."""
    out = []
    for m in messages:
        if m.role == "assistant" and m.tool_calls:
            content = f"{m.content}\n{calls_text(m.tool_calls)}" if m.content else calls_text(m.tool_calls)
            out.append(ChatMessage("assistant", content, m.name))
        elif m.role == "tool":
            out.append(ChatMessage("user", f"<tool_response>\n{m.content}\n</tool_response>"))
        else:
            out.append(m)
    if tools:
        prompt = tool_prompt(tools)
        if out and out[0].role in ("system", "developer"):
            out[0] = ChatMessage(out[0].role, f"{out[0].content}\n\n{prompt}", out[0].name)
        else:
            out.insert(0, ChatMessage("system", prompt))
    return out


def tool_call_constraint(tools: Tools) -> Constraint:
    """The grammar of an answer that may (AUTO) or must (REQUIRED, FUNCTION) call the offered tools:
    `<tool_call>[{"name": …, "arguments": {…}}, …]</tool_call>`, arguments valid for the named tool's schema.
    AUTO allows any text without `<tool_call>` first; a call, once opened, is constrained to the end."""
    offered = [t for t in tools.tools if tools.choice is not ToolChoice.FUNCTION or t.name == tools.function]
    # each tool's schema becomes a definition of the grammar's schema, its local references ("#/$defs/…", pydantic's
    # nested models and enums) rebased onto it
    defs = {f"tool{i}": _rebase(t.parameters, f"#/$defs/tool{i}") for i, t in enumerate(offered) if t.parameters}
    calls: dict[str, Any] = {
        "type": "array",
        "items": {
            "anyOf": [
                {
                    "type": "object",
                    "properties": {
                        "name": {"const": t.name},
                        "arguments": {"$ref": f"#/$defs/tool{i}"} if t.parameters else {"type": "object"},
                    },
                    "required": ["name", "arguments"],
                    "additionalProperties": False,
                }
                for i, t in enumerate(offered)
            ]
        },
        "minItems": 1,
        "$defs": defs,
        "x-guidance": COMPACT_JSON,
    }
    if not tools.parallel or tools.choice is ToolChoice.FUNCTION:
        calls["maxItems"] = 1
    body = f"{json.dumps(CALL_OPEN)} calls {json.dumps(CALL_CLOSE)}"
    if tools.choice is ToolChoice.AUTO:
        text = r"/(?s:.*)/ & ~/(?s:.*)<tool_call>(?s:.*)/"  # any text without an opening tag
        # one lexeme for the text and the tag: the lexer cannot end TEXT where the tag begins on its own
        start = f"TEXT | OPEN calls {json.dumps(CALL_CLOSE)}\nTEXT: {text}\nOPEN: ({text}) {json.dumps(CALL_OPEN)}"
    else:
        start = body
    return Constraint(ConstraintKind.LARK, f"start: {start}\ncalls: %json {json.dumps(calls)}\n")


def _rebase(schema: Any, base: str) -> Any:
    """`schema` with every local `$ref` ("#…") moved under the JSON pointer `base`."""
    if isinstance(schema, dict):
        return {
            key: base + value[1:]
            if key == "$ref" and isinstance(value, str) and value.startswith("#")
            else _rebase(value, base)
            for key, value in schema.items()
        }
    if isinstance(schema, list):
        return [_rebase(item, base) for item in schema]
    return schema


class ToolCallParser:
    """Splits one choice's streamed text into the answer's text and tool-call pieces.

    Text before `<tool_call>` is the answer (a possible start of the tag is held back); inside the tag each call's
    name is read whole and its arguments are passed on as they arrive, byte for byte as generated.
    """

    def __init__(self) -> None:
        self._state = "text"
        self._held = ""  # text: a suffix that may start the tag; name: the name's JSON string so far
        self._depth = 0  # arguments: nesting depth
        self._in_string = False
        self._escaped = False
        self.calls = 0  # complete calls so far
        self._index = -1

    def push(self, text: str) -> tuple[str, list[ToolCallDelta]]:
        content: list[str] = []
        deltas: list[ToolCallDelta] = []
        for ch in text:
            self._feed(ch, content, deltas)
        if self._state == "text" and self._held and not CALL_OPEN.startswith(self._held):
            content.append(self._held)
            self._held = ""
        return "".join(content), _merge(deltas)

    def flush(self) -> str:
        """At the end: text held back as a possible tag start is the answer's after all."""
        held, self._held = (self._held, "") if self._state == "text" else ("", self._held)
        return held

    def _feed(self, ch: str, content: list[str], deltas: list[ToolCallDelta]) -> None:
        state = self._state
        if state == "text":
            self._held += ch
            if self._held == CALL_OPEN:
                self._held, self._state = "", "array"
            elif not CALL_OPEN.startswith(self._held):
                # the tag may start later in the held text: release up to the longest suffix that starts it
                keep = next(i for i in range(len(self._held) + 1) if CALL_OPEN.startswith(self._held[i:]))
                content.append(self._held[:keep])
                self._held = self._held[keep:]
        elif ch.isspace() and state not in ("name", "arguments"):
            return
        elif state == "array":
            self._state = "item" if ch == "[" else "done"
        elif state == "item":  # `{"name":` up to the name's opening quote
            self._held += ch
            if self._held.endswith('"name":'):
                self._held, self._state = "", "name"
            elif ch == "]" and not self._held.strip("]"):
                self._held, self._state = "", "done"
        elif state == "name":
            self._held += ch
            if _complete_string(self._held):
                self._index += 1
                name = json.loads(self._held)
                deltas.append(ToolCallDelta(self._index, call_id(), name if isinstance(name, str) else str(name)))
                self._held, self._state = "", "before_arguments"
        elif state == "before_arguments":  # `,"arguments":`
            self._held += ch
            if self._held.endswith('"arguments":'):
                self._held, self._state = "", "arguments"
        elif state == "arguments":
            if self._depth == 0 and ch.isspace():
                return
            deltas.append(ToolCallDelta(self._index, arguments=ch))
            self._track(ch)
            if self._depth == 0:
                self.calls += 1
                self._state = "after_call"
        elif state == "after_call":  # `}` then `,` (next call) or `]`
            if ch == ",":
                self._state = "item"
            elif ch == "]":
                self._state = "done"

    def _track(self, ch: str) -> None:
        if self._in_string:
            if self._escaped:
                self._escaped = False
            elif ch == "\\":
                self._escaped = True
            elif ch == '"':
                self._in_string = False
        elif ch == '"':
            self._in_string = True
        elif ch in "{[":
            self._depth += 1
        elif ch in "}]":
            self._depth -= 1


def _complete_string(text: str) -> bool:
    """`text` is a whole JSON string literal (its closing quote is not escaped)."""
    if len(text) < 2 or not text.startswith('"') or not text.endswith('"'):
        return False
    backslashes = len(text[1:-1]) - len(text[1:-1].rstrip("\\"))
    return backslashes % 2 == 0


def _merge(deltas: list[ToolCallDelta]) -> list[ToolCallDelta]:
    """Consecutive argument pieces of one call as one piece."""
    merged: list[ToolCallDelta] = []
    for d in deltas:
        last = merged[-1] if merged else None
        if last is not None and last.index == d.index and not d.name and (last.arguments or not last.name):
            merged[-1] = ToolCallDelta(d.index, last.id, last.name, last.arguments + d.arguments)
        else:
            merged.append(d)
    return merged
