"""The request fields chat and text completions share (one place to add an OpenAI field both take), and usage."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, WithJsonSchema, field_validator, model_validator
from pydantic_core import PydanticCustomError

from http_bridge.schemas.constraints import (
    CONSTRAINT_FIELDS,
    SCHEMA_OR_TEXT,
    ResponseFormat,
    StructuredOutputs,
    json_object,
    non_empty_choices,
)

UINT32_MAX = 2**32 - 1
# `stop` is normalised to a list; the published schema shows what clients may send.
STOP_SCHEMA = {
    "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "maxItems": 4}, {"type": "null"}],
    "default": None,
}


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class SamplingRequest(BaseModel):
    """Fields shared by chat and text completions: model, n, stop, streaming, sampling, vLLM extras.

    A field both endpoints take is added here and mapped in translate/common.py; nothing else changes.
    """

    model_config = ConfigDict(extra="allow")

    model: str
    n: int = Field(default=1, ge=1, le=128)
    # Count and length are bounded by settings (http_bridge/request_limits.py: max_stop_sequences, max_stop_chars).
    stop: Annotated[list[str] | None, WithJsonSchema(STOP_SCHEMA)] = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    seed: int | None = Field(default=None, ge=-(2**63), le=2**64 - 1)
    logit_bias: dict[Annotated[int, Field(ge=0, le=UINT32_MAX)], Annotated[float, Field(ge=-100, le=100)]] | None = None
    user: str | None = None
    # vLLM extras.
    top_k: int | None = Field(default=None, ge=-1, le=UINT32_MAX)
    min_p: float | None = Field(default=None, ge=0, le=1)
    repetition_penalty: float | None = Field(default=None, gt=0, le=10)
    ignore_eos: bool = False
    # Constrained output: OpenAI's response_format or one of vLLM's extras (at most one of them per request).
    response_format: ResponseFormat | None = None
    structured_outputs: StructuredOutputs | None = None
    guided_json: Annotated[dict[str, Any] | None, WithJsonSchema(SCHEMA_OR_TEXT)] = None
    guided_regex: str | None = Field(default=None, min_length=1)
    guided_choice: list[str] | None = None
    guided_grammar: str | None = Field(default=None, min_length=1)

    @field_validator("model")
    @classmethod
    def _strip_model(cls, value: str) -> str:
        # Hosted APIs' own examples send "llama-3.1-8b-instruct " (trailing space); served names never have one.
        return value.strip()

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_as_list(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("guided_json", mode="before")
    @classmethod
    def _guided_json_object(cls, value: object) -> object:
        return None if value is None else json_object(value)

    @field_validator("guided_choice")
    @classmethod
    def _guided_choices(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else non_empty_choices(value)

    @model_validator(mode="after")
    def _one_constraint(self) -> SamplingRequest:
        given = self.constraint_fields()
        if len(given) > 1:
            raise PydanticCustomError(
                "invalid_value",
                "only one output constraint may be given, but this request has {names}",
                {"names": " and ".join(f"'{name}'" for name in given), "param": given[1]},
            )
        return self

    @field_validator("stream_options")
    @classmethod
    def _stream_options_need_stream(cls, value: StreamOptions | None, info: ValidationInfo) -> object:
        if value is not None and not info.data.get("stream"):
            raise PydanticCustomError("invalid_value", "stream_options is only allowed when stream is true")
        return value

    def constraint_fields(self) -> list[str]:
        """The fields that constrain this request's output (response_format {"type": "text"} does not)."""
        given = [name for name in CONSTRAINT_FIELDS if getattr(self, name) is not None]
        if self.response_format is not None and self.response_format.type == "text":
            given.remove("response_format")
        return given

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
