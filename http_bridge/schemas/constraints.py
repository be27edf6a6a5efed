"""Request fields that constrain the output (chat and text completions): OpenAI's `response_format` and vLLM's
`guided_*` / `structured_outputs` extras. A request names at most one constraint (schemas/common.py checks it);
translate/constraints.py maps it to the proto's Constraint."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator, model_validator
from pydantic_core import PydanticCustomError

# OpenAI's pattern for response_format.json_schema.name and function names.
NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"
# The request fields that carry a constraint, in the order they are reported when several are given.
CONSTRAINT_FIELDS = (
    "response_format",
    "structured_outputs",
    "guided_json",
    "guided_regex",
    "guided_choice",
    "guided_grammar",
)
STRUCTURED_KINDS = ("json", "json_object", "regex", "choice", "grammar")
# A JSON schema field as published: an object, or JSON text of one (checked by `json_object`).
SCHEMA_OR_TEXT = {"anyOf": [{"type": "object"}, {"type": "string"}, {"type": "null"}], "default": None}


def json_object(value: object) -> object:
    """A JSON schema given as an object or as JSON text (vLLM accepts both) → the object; anything else is an error."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise PydanticCustomError("invalid_value", "not valid JSON: {error}", {"error": str(exc)}) from None
    if not isinstance(value, dict):
        raise PydanticCustomError("invalid_value", "a JSON schema must be a JSON object")
    return value


def non_empty_choices(value: list[str]) -> list[str]:
    if not value:
        raise PydanticCustomError("invalid_value", "the list of choices must not be empty")
    return value


class JsonSchemaFormat(BaseModel):
    """`response_format.json_schema`: the schema is enforced whether `strict` is true or not."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str = Field(pattern=NAME_PATTERN)
    description: str | None = None
    # `schema` would shadow BaseModel.schema(); the wire name is kept by the alias.
    schema_: dict[str, Any] = Field(alias="schema")
    strict: bool | None = Field(default=None, strict=True)

    @field_validator("schema_", mode="before")
    @classmethod
    def _schema_is_object(cls, value: object) -> object:
        if not isinstance(value, dict):
            raise PydanticCustomError("invalid_value", "the schema must be a JSON object")
        return value


class ResponseFormat(BaseModel):
    """OpenAI's `response_format`: `text` (no constraint), `json_object` (any JSON object) or `json_schema`."""

    model_config = ConfigDict(extra="allow")

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise PydanticCustomError(
                "invalid_value",
                "response_format of type 'json_schema' needs a 'json_schema' object",
                {"param": "response_format.json_schema"},
            )
        return self


class StructuredOutputs(BaseModel):
    """vLLM's `structured_outputs`: exactly one of its kinds."""

    model_config = ConfigDict(extra="forbid")

    json_: Annotated[dict[str, Any] | None, WithJsonSchema(SCHEMA_OR_TEXT)] = Field(default=None, alias="json")
    json_object: bool | None = Field(default=None, strict=True)
    regex: str | None = Field(default=None, min_length=1)
    choice: list[str] | None = None
    grammar: str | None = Field(default=None, min_length=1)

    @field_validator("json_", mode="before")
    @classmethod
    def _json_object(cls, value: object) -> object:
        return None if value is None else json_object(value)

    @field_validator("choice")
    @classmethod
    def _choices(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else non_empty_choices(value)

    @model_validator(mode="after")
    def _exactly_one(self) -> StructuredOutputs:
        given = [kind for kind in STRUCTURED_KINDS if self.kind_value(kind) not in (None, False)]
        if len(given) != 1:
            raise PydanticCustomError(
                "invalid_value",
                "structured_outputs needs exactly one of {kinds}, got {given}",
                {"kinds": ", ".join(STRUCTURED_KINDS), "given": ", ".join(given) or "none"},
            )
        return self

    def kind_value(self, kind: str) -> object:
        return getattr(self, "json_" if kind == "json" else kind)
