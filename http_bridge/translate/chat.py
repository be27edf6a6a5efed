"""Chat completions: the request's messages and chat-only fields → GenerateRequest; the chat objects built from the
shared pieces (translate/common.py does the dispatch and the per-choice accumulation)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from http_bridge.schemas.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessageIn,
    ChatMessageOut,
    Choice,
    ChoiceLogprobs,
    ChunkChoice,
    Delta,
    TokenLogprob,
    TopLogprob,
)
from http_bridge.schemas.common import Usage
from http_bridge.schemas.tools import FunctionCall, FunctionCallDelta, FunctionTool, ToolCall, ToolCallDelta
from http_bridge.translate.common import CallState, ChoiceState, CompletionMeta, generate_request
from inference_service.api.v1 import generation_pb2 as pb

_TOOL_CHOICE_MODES = {
    "auto": pb.TOOL_CHOICE_MODE_AUTO,
    "none": pb.TOOL_CHOICE_MODE_NONE,
    "required": pb.TOOL_CHOICE_MODE_REQUIRED,
}


def to_message(message: ChatMessageIn) -> pb.ChatMessage:
    calls = [
        pb.ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments) for c in message.tool_calls or ()
    ]
    return pb.ChatMessage(
        role=message.role,
        content=message.text(),
        name=message.name or "",
        tool_calls=calls,
        tool_call_id=message.tool_call_id or "",
    )


def to_tool(tool: FunctionTool) -> pb.Tool:
    function = tool.function
    parameters = "" if function.parameters is None else json.dumps(function.parameters, separators=(",", ":"))
    return pb.Tool(name=function.name, description=function.description or "", parameters_json=parameters)


def chat_input(body: ChatCompletionRequest) -> pb.ChatInput:
    """Messages, and the tools with their choice. tool_choice "none" sends no tools: the service would neither
    render them nor parse calls (TOOL_CHOICE_MODE_NONE), and an output constraint may then apply."""
    chat = pb.ChatInput(messages=[to_message(m) for m in body.messages])
    tools = body.callable_tools()
    if not tools:
        return chat
    chat.tools.extend(to_tool(t) for t in tools)
    named = body.named_function()
    if named is not None:
        chat.tool_choice.function_name = named
    elif isinstance(body.tool_choice, str):
        chat.tool_choice.mode = _TOOL_CHOICE_MODES[body.tool_choice]
    if body.parallel_tool_calls is not None:
        chat.parallel_tool_calls = body.parallel_tool_calls
    return chat


def to_generate_request(body: ChatCompletionRequest, request_id: str) -> pb.GenerateRequest:
    """OpenAI chat request → GenerateRequest."""
    max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    output = pb.OutputOptions(logprobs=body.logprobs, top_logprobs=body.top_logprobs or 0)
    request = generate_request(body, request_id, max_tokens=max_tokens, output=output)
    request.chat.CopyFrom(chat_input(body))
    return request


def to_call_deltas(deltas: Sequence[pb.ToolCallDelta]) -> list[ToolCallDelta] | None:
    """Proto call pieces → OpenAI's delta.tool_calls: the first piece of a call (it has the id) carries id, type and
    name with empty arguments; later pieces only index and argument text."""
    out = []
    for d in deltas:
        if d.id:
            function = FunctionCallDelta(name=d.name, arguments=d.arguments)
            out.append(ToolCallDelta(index=d.index, id=d.id, type="function", function=function))
        else:
            out.append(ToolCallDelta(index=d.index, function=FunctionCallDelta(arguments=d.arguments)))
    return out or None


def to_tool_calls(calls: Sequence[CallState]) -> list[ToolCall] | None:
    tool_calls = [ToolCall(id=c.id, function=FunctionCall(name=c.name, arguments="".join(c.arguments))) for c in calls]
    return tool_calls or None


def _bytes_of(raw: bytes, token: str) -> list[int]:
    return list(raw) if raw else list(token.encode())


def to_logprobs(items: Sequence[pb.TokenLogprob]) -> list[TokenLogprob]:
    """Proto logprobs → OpenAI's `logprobs.content` entries."""
    return [
        TokenLogprob(
            token=item.token,
            logprob=item.logprob,
            bytes=_bytes_of(item.bytes, item.token),
            top_logprobs=[
                TopLogprob(token=top.token, logprob=top.logprob, bytes=_bytes_of(top.bytes, top.token))
                for top in item.top_logprobs
            ],
        )
        for item in items
    ]


@dataclass(frozen=True, slots=True)
class ChatBuilder:
    """chat.completion.chunk objects while streaming, one chat.completion otherwise."""

    meta: CompletionMeta
    # tool_choice named one function: its call ends the answer with finish_reason "stop", as OpenAI reports it.
    named_tool: bool = False

    def _finish_reason(self, reason: str | None) -> str | None:
        return "stop" if self.named_tool and reason == "tool_calls" else reason

    def _chunk(self, choices: list[ChunkChoice], usage: Usage | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(**self.meta.header(), choices=choices, usage=usage)

    def _logprobs(self, items: Sequence[pb.TokenLogprob]) -> ChoiceLogprobs | None:
        return ChoiceLogprobs(content=to_logprobs(items)) if self.meta.logprobs else None

    def opening(self, choices: int) -> list[ChatCompletionChunk]:
        """The first chunk of each choice: the assistant role and empty content."""
        return [self._chunk([ChunkChoice(index=i, delta=Delta(role="assistant", content=""))]) for i in range(choices)]

    def content(self, index: int, chunk: pb.TokenChunk) -> ChatCompletionChunk:
        calls = to_call_deltas(chunk.tool_calls)
        # A piece of a call without answer text has no content key (as OpenAI streams calls).
        delta = Delta(content=chunk.text or (None if calls else ""), tool_calls=calls)
        return self._chunk([ChunkChoice(index=index, delta=delta, logprobs=self._logprobs(chunk.logprobs))])

    def finish(self, index: int, reason: str) -> ChatCompletionChunk:
        return self._chunk([ChunkChoice(index=index, delta=Delta(), finish_reason=self._finish_reason(reason))])

    def usage(self, usage: Usage) -> ChatCompletionChunk:
        return self._chunk([], usage)

    def final(self, choices: Sequence[ChoiceState], usage: Usage) -> ChatCompletion:
        return ChatCompletion(
            **self.meta.header(),
            choices=[
                Choice(
                    index=i,
                    message=_message("".join(choice.text), to_tool_calls(choice.tool_calls())),
                    logprobs=self._logprobs(choice.logprobs),
                    finish_reason=self._finish_reason(choice.finish_reason),
                )
                for i, choice in enumerate(choices)
            ],
            usage=usage,
        )


def _message(text: str, calls: list[ToolCall] | None) -> ChatMessageOut:
    # content is null when the model only called tools, as OpenAI returns it.
    return ChatMessageOut(content=text if text or not calls else None, tool_calls=calls)
