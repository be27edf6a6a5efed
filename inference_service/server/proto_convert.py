"""gRPC messages ⇄ engine types. Pure functions; range checks of gRPC input live here (the bridge checks too).

Emptiness of the prompt is the engine's to check (`AsyncEngine.render`): it sees what the input renders to.
"""

from __future__ import annotations

import json
import math
import re
import uuid

from inference_service.api.v1 import generation_pb2 as pb
from inference_service.engine.async_engine import PromptInput
from inference_service.engine.constraints import parse_json
from inference_service.engine.errors import InvalidRequestError
from inference_service.engine.tool_calls import tool_call_constraint
from inference_service.engine.types import (
    ChatMessage,
    ChoiceOutput,
    Constraint,
    ConstraintKind,
    FinishReason,
    GenerationParams,
    OutputParams,
    SamplingParams,
    StoppingParams,
    Tool,
    ToolCall,
    ToolChoice,
    Tools,
)
from inference_service.models.folder import SearchDefaults
from ortserve_common.request_context import is_request_id

MAX_N = 128  # as OpenAI; choices beyond the free KV slots wait for one
MAX_STOPS = 16
MAX_TOP_LOGPROBS = 20
ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # as OpenAI
MAX_TOOLS = 128  # as OpenAI
CONSTRAINT_KINDS = {
    "json_schema": ConstraintKind.JSON_SCHEMA,
    "json_object": ConstraintKind.JSON_OBJECT,
    "regex": ConstraintKind.REGEX,
    "lark": ConstraintKind.LARK,
    "choice": ConstraintKind.CHOICE,
}
TOOL_CHOICES = {
    pb.TOOL_CHOICE_MODE_UNSPECIFIED: ToolChoice.AUTO,
    pb.TOOL_CHOICE_MODE_AUTO: ToolChoice.AUTO,
    pb.TOOL_CHOICE_MODE_NONE: ToolChoice.NONE,
    pb.TOOL_CHOICE_MODE_REQUIRED: ToolChoice.REQUIRED,
}

FINISH_REASONS = {
    FinishReason.EOS: pb.FINISH_REASON_EOS,
    FinishReason.STOP_SEQUENCE: pb.FINISH_REASON_STOP_SEQUENCE,
    FinishReason.STOP_TOKEN: pb.FINISH_REASON_STOP_TOKEN,
    FinishReason.MAX_TOKENS: pb.FINISH_REASON_MAX_TOKENS,
    FinishReason.CONTEXT_LENGTH: pb.FINISH_REASON_CONTEXT_LENGTH,
    FinishReason.CANCELLED: pb.FINISH_REASON_CANCELLED,
    FinishReason.TOOL_CALLS: pb.FINISH_REASON_TOOL_CALLS,
}


def _check(ok: bool, param: str, message: str) -> None:
    if not ok:
        raise InvalidRequestError(message, param=param)


def _in_range(value: float, low: float, high: float, param: str) -> float:
    _check(math.isfinite(value) and low <= value <= high, param, f"{param} must be in [{low}, {high}], got {value}")
    return value


def _message(i: int, m: pb.ChatMessage) -> ChatMessage:
    _check(m.role in ROLES, f"messages[{i}].role", f"unknown role {m.role!r}; expected one of {sorted(ROLES)}")
    _check(
        not m.tool_calls or m.role == "assistant",
        f"messages[{i}].tool_calls",
        "only assistant messages have tool_calls",
    )
    _check(
        (m.role == "tool") == bool(m.tool_call_id),
        f"messages[{i}].tool_call_id",
        "tool messages need the tool_call_id of the call they answer (and only they have one)",
    )
    calls = []
    for j, c in enumerate(m.tool_calls):
        _check(bool(c.name), f"messages[{i}].tool_calls[{j}].name", "a tool call needs the function's name")
        calls.append(ToolCall(c.id, c.name, c.arguments))
    return ChatMessage(m.role, m.content, m.name, tuple(calls), m.tool_call_id)


def chat_tools(chat: pb.ChatInput) -> Tools | None:
    """The tools a chat request offers and its tool choice; None without tools."""
    which = chat.tool_choice.WhichOneof("choice")
    if not chat.tools:
        _check(
            which is None or (which == "mode" and chat.tool_choice.mode == pb.TOOL_CHOICE_MODE_NONE),
            "tool_choice",
            "tool_choice needs tools",
        )
        return None
    _check(len(chat.tools) <= MAX_TOOLS, "tools", f"at most {MAX_TOOLS} tools are allowed")
    tools = []
    for i, t in enumerate(chat.tools):
        _check(
            TOOL_NAME.fullmatch(t.name) is not None,
            f"tools[{i}].name",
            f"tool names are 1-64 letters, digits, underscores or dashes; got {t.name!r}",
        )
        parameters = None
        if t.parameters_json:
            parameters = parse_json(t.parameters_json, f"tools[{i}].parameters")
            _check(isinstance(parameters, dict), f"tools[{i}].parameters", "parameters must be a JSON Schema object")
        tools.append(Tool(t.name, t.description, parameters))
    names = [t.name for t in tools]
    _check(len(set(names)) == len(names), "tools", "tool names must be unique")
    choice, function = ToolChoice.AUTO, ""
    if which == "mode":
        _check(chat.tool_choice.mode in TOOL_CHOICES, "tool_choice", "unknown tool_choice mode")
        choice = TOOL_CHOICES[chat.tool_choice.mode]
    elif which == "function_name":
        function = chat.tool_choice.function_name
        _check(function in names, "tool_choice", f"tool_choice names {function!r}, which is not among the tools")
        choice = ToolChoice.FUNCTION
    parallel = chat.parallel_tool_calls if chat.HasField("parallel_tool_calls") else True
    return Tools(tuple(tools), choice, function, parallel)


def prompt_input(req: pb.GenerateRequest | pb.TokenizeRequest) -> PromptInput:
    kind = req.WhichOneof("input")
    if kind == "chat":
        messages = tuple(_message(i, m) for i, m in enumerate(req.chat.messages))
        add_prompt = req.chat.add_generation_prompt if req.chat.HasField("add_generation_prompt") else True
        tools = chat_tools(req.chat)
        rendered = tools.tools if tools is not None and tools.callable else ()
        return PromptInput(messages=messages, add_generation_prompt=add_prompt, tools=rendered)
    if kind == "prompt":
        return PromptInput(text=req.prompt)
    if kind == "token_ids":
        return PromptInput(token_ids=tuple(req.token_ids.ids))
    raise InvalidRequestError("one of chat, prompt or token_ids is required", param="input")


def sampling_params(s: pb.SamplingParams, defaults: SearchDefaults) -> SamplingParams:
    def opt(name: str, default: float) -> float:
        return float(getattr(s, name)) if s.HasField(name) else default

    for token_id, bias in s.logit_bias.items():
        _in_range(bias, -100, 100, f"logit_bias[{token_id}]")
    return SamplingParams(
        temperature=_in_range(opt("temperature", defaults.temperature), 0, 100, "temperature"),
        top_p=_in_range(opt("top_p", defaults.top_p), 1e-9, 1, "top_p"),
        top_k=int(s.top_k) if s.HasField("top_k") else defaults.top_k,
        min_p=_in_range(opt("min_p", 0.0), 0, 1, "min_p"),
        frequency_penalty=_in_range(opt("frequency_penalty", 0.0), -2, 2, "frequency_penalty"),
        presence_penalty=_in_range(opt("presence_penalty", 0.0), -2, 2, "presence_penalty"),
        repetition_penalty=_in_range(opt("repetition_penalty", 1.0), 1e-3, 10, "repetition_penalty"),
        seed=int(s.seed) if s.HasField("seed") else None,
        logit_bias={int(k): float(v) for k, v in s.logit_bias.items()},
    )


def request_id(value: str) -> str:
    """The caller's id when it is safe to log and echo, a fresh one when empty (the only place ids are made)."""
    if not value:
        return uuid.uuid4().hex
    _check(
        is_request_id(value),
        "request_id",
        "request_id must be 1-128 characters of letters, digits and ._:-",
    )
    return value


def constraint(c: pb.Constraint) -> Constraint | None:
    kind = c.WhichOneof("kind")
    if kind is None:
        return None
    if kind == "json_object":
        _check(c.json_object, "constraint.json_object", "json_object must be true when set")
        source = ""
    elif kind == "choice":
        _check(bool(c.choice.choices), "constraint.choice", "choice needs at least one string")
        source = json.dumps(list(c.choice.choices))
    else:
        source = getattr(c, kind)
        _check(bool(source), f"constraint.{kind}", f"{kind} must not be empty")
    return Constraint(CONSTRAINT_KINDS[kind], source, c.whitespace_flexible)


def generation_params(req: pb.GenerateRequest, defaults: SearchDefaults) -> GenerationParams:
    """What to generate; the prompt goes separately (`prompt_input`), as the engine renders and tokenizes it."""
    st = req.stopping
    _check(not st.HasField("max_tokens") or st.max_tokens >= 1, "max_tokens", "max_tokens must be at least 1")
    _check(len(st.stop) <= MAX_STOPS, "stop", f"at most {MAX_STOPS} stop strings are allowed")
    _check(all(st.stop), "stop", "stop strings must not be empty")
    _check(
        req.output.top_logprobs <= MAX_TOP_LOGPROBS, "top_logprobs", f"top_logprobs must be in [0, {MAX_TOP_LOGPROBS}]"
    )
    n = req.n or 1
    _check(n <= MAX_N, "n", f"n must be in [1, {MAX_N}]")
    constrained = constraint(req.constraint) if req.HasField("constraint") else None
    tools = chat_tools(req.chat) if req.WhichOneof("input") == "chat" else None
    calls = tools is not None and tools.callable
    if calls:
        assert tools is not None
        _check(constrained is None, "constraint", "a constraint (response_format) cannot be combined with tools")
        constrained = tool_call_constraint(tools)
    return GenerationParams(
        sampling=sampling_params(req.sampling, defaults),
        stopping=StoppingParams(
            max_tokens=st.max_tokens if st.HasField("max_tokens") else None,
            stop=tuple(st.stop),
            stop_token_ids=tuple(st.stop_token_ids),
            ignore_eos=st.ignore_eos,
            include_stop_str_in_output=st.include_stop_str_in_output,
        ),
        output=OutputParams(
            logprobs=req.output.logprobs or req.output.top_logprobs > 0,
            top_logprobs=req.output.top_logprobs,
        ),
        n=n,
        constraint=constrained,
        tool_calls=calls,
    )


def responses(out: ChoiceOutput, return_token_ids: bool) -> list[pb.GenerateResponse]:
    """One engine output → a chunk (when it carries anything) and, on the last one, a completion.

    Token ids go out only when the request's `OutputOptions.return_token_ids` asks: the engine always reports them.
    """
    items = []
    if out.text or out.logprobs or out.tool_calls or (return_token_ids and out.token_ids):
        chunk = pb.TokenChunk(
            text=out.text,
            token_ids=out.token_ids if return_token_ids else (),
            tool_calls=[
                pb.ToolCallDelta(index=d.index, id=d.id, name=d.name, arguments=d.arguments) for d in out.tool_calls
            ],
        )
        for lp in out.logprobs:
            chunk.logprobs.append(
                pb.TokenLogprob(
                    token_id=lp.token_id,
                    token=lp.token,
                    logprob=lp.logprob,
                    bytes=lp.bytes,
                    top_logprobs=[
                        pb.TopLogprob(token_id=t.token_id, token=t.token, logprob=t.logprob, bytes=t.bytes)
                        for t in lp.top
                    ],
                )
            )
        items.append(pb.GenerateResponse(request_id=out.request_id, index=out.index, chunk=chunk))
    if out.finish_reason is not None:
        complete = pb.GenerationComplete(
            finish_reason=FINISH_REASONS[out.finish_reason],
            matched_stop=out.matched_stop,
            usage=pb.Usage(prompt_tokens=out.prompt_tokens, completion_tokens=out.completion_tokens),
        )
        if out.timing is not None:
            complete.timing.CopyFrom(
                pb.Timing(
                    queue_seconds=out.timing.queue_seconds,
                    time_to_first_token_seconds=out.timing.time_to_first_token_seconds,
                    total_seconds=out.timing.total_seconds,
                )
            )
        items.append(pb.GenerateResponse(request_id=out.request_id, index=out.index, complete=complete))
    return items
