"""OpenAI's function tools in chat completions: the `tools` and `tool_choice` of a request, the calls of assistant
messages in the conversation, and the calls in the output (whole, and as streamed pieces)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, field_validator, model_serializer
from pydantic_core import PydanticCustomError

from http_bridge.schemas.constraints import NAME_PATTERN

MAX_TOOLS = 128  # OpenAI's limit
ToolChoiceMode = Literal["none", "auto", "required"]


class FunctionDefinition(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = Field(pattern=NAME_PATTERN)
    description: str | None = None
    # JSON Schema of the arguments; absent means any JSON object.
    parameters: dict[str, Any] | None = None
    # Accepted: the arguments are always constrained to `parameters`, strict or not.
    strict: bool | None = Field(default=None, strict=True)

    @field_validator("parameters", mode="before")
    @classmethod
    def _parameters_object(cls, value: object) -> object:
        if value is not None and not isinstance(value, dict):
            raise PydanticCustomError("invalid_value", "parameters must be a JSON Schema object")
        return value


class FunctionTool(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["function"]
    function: FunctionDefinition

    @field_validator("type", mode="before")
    @classmethod
    def _function_only(cls, value: object) -> object:
        if value != "function":
            raise PydanticCustomError(
                "unsupported_value", "only tools of type 'function' are supported, got {kind}", {"kind": repr(value)}
            )
        return value


class FunctionName(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str


class NamedToolChoice(BaseModel):
    """`tool_choice: {"type": "function", "function": {"name": …}}`: exactly one call of that function."""

    model_config = ConfigDict(extra="allow")

    type: Literal["function"]
    function: FunctionName


def check_tool_choice(value: object) -> object:
    """Shape errors of `tool_choice` as one message (a union's errors would name its members, not the param)."""
    if value is None or value in ("none", "auto", "required"):
        return value
    if isinstance(value, dict) and value.get("type") == "function":
        function = value.get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return value
    raise PydanticCustomError(
        "invalid_value",
        'tool_choice must be \'none\', \'auto\', \'required\' or {{"type": "function", "function": {{"name": …}}}}',
    )


class FunctionCall(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    # The arguments as JSON text, as the model wrote them.
    arguments: str


class ToolCall(BaseModel):
    """A call of an assistant message: in the conversation, and in a non-streamed response."""

    model_config = ConfigDict(extra="allow")

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class _WithoutNulls(BaseModel):
    # Wrap mode without a return annotation keeps the model's own fields in the published (OpenAPI) schema.
    @model_serializer(mode="wrap")
    def _without_nulls(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        return {key: value for key, value in handler(self).items() if value is not None}


class FunctionCallDelta(_WithoutNulls):
    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(_WithoutNulls):
    """A streamed piece of a call: the first has index, id, type and name (arguments ""), later ones index and
    argument text."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionCallDelta
