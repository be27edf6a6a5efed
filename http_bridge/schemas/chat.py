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
)
from pydantic_core import PydanticCustomError

from http_bridge.schemas.common import UINT32_MAX, SamplingRequest, Usage

# Known OpenAI features not implemented here: present (and not a no-op value) → 400 naming the param.
UNSUPPORTED_PARAMS = ("tools", "tool_choice", "functions", "function_call", "audio", "prediction", "web_search_options")


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant"]
    # A string or a list of text parts; only assistant messages may have null content.
    content: str | list[TextPart] | None
    name: str | None = None

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

    def text(self) -> str:
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        return "".join(part.text for part in self.content)


class ChatCompletionRequest(SamplingRequest):
    messages: list[ChatMessageIn] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1, le=UINT32_MAX)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=UINT32_MAX)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    # Known but unsupported.
    tools: Any = None
    tool_choice: Any = None
    functions: Any = None
    function_call: Any = None
    audio: Any = None
    prediction: Any = None
    web_search_options: Any = None
    response_format: Any = None
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
        harmless = value is None or value == [] or (info.field_name == "tool_choice" and value == "none")
        if not harmless:
            raise PydanticCustomError(
                "unsupported_parameter", "'{name}' is not supported by this server", {"name": info.field_name}
            )
        return value

    @field_validator("response_format")
    @classmethod
    def _text_format_only(cls, value: object) -> object:
        if value is not None and value != {"type": "text"}:
            raise PydanticCustomError("unsupported_value", "only response_format {'type': 'text'} is supported")
        return value

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
    content: str


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
