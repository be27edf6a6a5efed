"""Pydantic models of OpenAI's chat completions (`/v1/chat/completions`): the request beyond the shared fields,
the chat.completion object and its stream chunks."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from http_bridge.schemas.common import UINT32_MAX, SamplingRequest, Usage
from http_bridge.schemas.tools import (
    MAX_TOOLS,
    FunctionTool,
    NamedToolChoice,
    ToolCall,
    ToolCallDelta,
    ToolChoiceMode,
    check_tool_choice,
)

# Known OpenAI features not implemented here: present (and not a no-op value) → 400 naming the param.
UNSUPPORTED_PARAMS = ("functions", "function_call", "audio", "prediction", "web_search_options")
# The published schema says what the validators check: a tool message needs the id of the call it answers.
TOOL_MESSAGE_SCHEMA: dict[str, Any] = {
    "allOf": [
        {
            "if": {"properties": {"role": {"const": "tool"}}, "required": ["role"]},
            "then": {"required": ["tool_call_id"], "properties": {"tool_call_id": {"type": "string", "minLength": 1}}},
        }
    ]
}


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="allow", json_schema_extra=TOOL_MESSAGE_SCHEMA)

    role: Literal["system", "developer", "user", "assistant", "tool"]
    # A string or a list of text parts; only assistant messages may have null (or no) content.
    content: str | list[TextPart] | None = Field(default=None, validate_default=True)
    name: str | None = None
    # Assistant messages: the calls it made. Tool messages: the id of the call they answer (required).
    tool_calls: list[ToolCall] | None = Field(default=None, validate_default=True)
    tool_call_id: str | None = Field(default=None, validate_default=True)

    @field_validator("content", mode="before")
    @classmethod
    def _check_content(cls, value: object, info: ValidationInfo) -> object:
        # Shapes are checked here so that errors name `messages[i].content`, not a union member.
        if value is None and info.data.get("role") != "assistant":
            raise PydanticCustomError("invalid_value", "content must not be null for this role")
        if value is None or isinstance(value, str):
            return value
        if not isinstance(value, list) or not all(isinstance(part, dict) for part in value):
            raise PydanticCustomError("invalid_value", "content must be a string or a list of content parts")
        for part in value:
            if part.get("type") != "text":
                raise PydanticCustomError(
                    "unsupported_value",
                    "only text content parts are supported, got type {kind}",
                    {"kind": repr(part.get("type"))},
                )
            if not isinstance(part.get("text"), str):
                raise PydanticCustomError("invalid_value", "a text content part needs a string 'text'")
        return value

    @field_validator("tool_calls")
    @classmethod
    def _calls_of_assistants(cls, value: list[ToolCall] | None, info: ValidationInfo) -> list[ToolCall] | None:
        if value and info.data.get("role") not in ("assistant", None):
            raise PydanticCustomError("invalid_value", "only assistant messages may have tool_calls")
        return value or None

    @field_validator("tool_call_id")
    @classmethod
    def _tool_message_names_its_call(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("role") == "tool" and not value:
            raise PydanticCustomError("missing", "a message with role 'tool' needs the 'tool_call_id' it answers")
        return value if info.data.get("role") == "tool" else None

    def text(self) -> str:
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        return "".join(part.text for part in self.content)


def _invalid(message: str, param: str, **context: object) -> PydanticCustomError:
    # Cross-field checks run on the whole body: `param` in the context names the field (http_bridge/errors.py).
    return PydanticCustomError("invalid_value", message, {**context, "param": param})


def check_tools(body: ChatCompletionRequest) -> None:
    """tools, tool_choice and an output constraint agree with each other."""
    tools = body.tools or []
    names: set[str] = set()
    for i, tool in enumerate(tools):
        if tool.function.name in names:
            raise _invalid(
                "duplicate function name '{name}' in tools", f"tools[{i}].function.name", name=tool.function.name
            )
        names.add(tool.function.name)
    if body.tool_choice not in (None, "none") and not tools:
        raise _invalid("'tool_choice' is only allowed when 'tools' are specified", "tool_choice")
    named = body.named_function()
    if named is not None and named not in names:
        raise _invalid("no function named '{name}' in tools", "tool_choice.function.name", name=named)
    constraints = body.constraint_fields()
    if constraints and body.callable_tools():
        raise _invalid(
            "'{field}' cannot be combined with 'tools' (tool calls carry their own constraint); leave one out, "
            "or set tool_choice to 'none'",
            constraints[0],
            field=constraints[0],
        )


def check_tool_messages(messages: list[ChatMessageIn]) -> None:
    """A tool message answers a call of the latest assistant message with tool_calls before it."""
    call_ids: set[str] = set()
    for i, message in enumerate(messages):
        if message.role == "assistant" and message.tool_calls:
            call_ids = {call.id for call in message.tool_calls}
        elif message.role == "tool" and message.tool_call_id not in call_ids:
            raise _invalid(
                "a message with role 'tool' must answer a tool call of a preceding assistant message; "
                "no earlier call has id '{id}'",
                f"messages[{i}].tool_call_id",
                id=message.tool_call_id,
            )


class ChatCompletionRequest(SamplingRequest):
    messages: list[ChatMessageIn] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1, le=UINT32_MAX)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=UINT32_MAX)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    tools: list[FunctionTool] | None = Field(default=None, max_length=MAX_TOOLS)
    tool_choice: ToolChoiceMode | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = Field(default=None, strict=True)
    # Known but unsupported.
    functions: Any = None
    function_call: Any = None
    audio: Any = None
    prediction: Any = None
    web_search_options: Any = None
    modalities: Any = None

    @field_validator("top_logprobs")
    @classmethod
    def _top_logprobs_needs_logprobs(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value and not info.data.get("logprobs"):
            raise PydanticCustomError("invalid_value", "logprobs must be true when top_logprobs is used")
        return value

    @field_validator(*UNSUPPORTED_PARAMS)
    @classmethod
    def _reject_unsupported(cls, value: object, info: ValidationInfo) -> object:
        if value is not None and value != []:
            raise PydanticCustomError(
                "unsupported_parameter", "'{name}' is not supported by this server", {"name": info.field_name}
            )
        return value

    @field_validator("tool_choice", mode="before")
    @classmethod
    def _tool_choice_shape(cls, value: object) -> object:
        return check_tool_choice(value)

    @model_validator(mode="after")
    def _tools_consistent(self) -> ChatCompletionRequest:
        check_tools(self)
        check_tool_messages(self.messages)
        return self

    def callable_tools(self) -> list[FunctionTool]:
        """The tools the model may call: none when tool_choice is 'none' (they are then not even rendered)."""
        return [] if self.tool_choice == "none" else list(self.tools or ())

    def named_function(self) -> str | None:
        return self.tool_choice.function.name if isinstance(self.tool_choice, NamedToolChoice) else None

    @field_validator("modalities")
    @classmethod
    def _text_modality_only(cls, value: object) -> object:
        if value is not None and value != ["text"]:
            raise PydanticCustomError("unsupported_value", "only modalities ['text'] is supported")
        return value


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprob] | None


class ChatMessageOut(BaseModel):
    role: Literal["assistant"] = "assistant"
    # null when the model only called tools.
    content: str | None
    tool_calls: list[ToolCall] | None = None

    @model_serializer(mode="wrap")
    def _calls_when_any(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        data = handler(self)
        if data.get("tool_calls") is None:
            data.pop("tool_calls", None)
        return data


class Choice(BaseModel):
    index: int
    message: ChatMessageOut
    logprobs: ChoiceLogprobs | None = None
    finish_reason: str | None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    system_fingerprint: str
    choices: list[Choice]
    usage: Usage


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None

    # Wrap mode without a return annotation keeps the model's own fields in the published (OpenAPI) schema.
    @model_serializer(mode="wrap")
    def _without_nulls(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        return {key: value for key, value in handler(self).items() if value is not None}


class ChunkChoice(BaseModel):
    index: int
    delta: Delta
    logprobs: ChoiceLogprobs | None = None
    finish_reason: str | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    system_fingerprint: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
