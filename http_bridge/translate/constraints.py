"""A request's output constraint (response_format, structured_outputs or guided_*) → the proto's Constraint.

The request has at most one (schemas/common.py); JSON schemas travel as compact JSON text and the service reports
a schema, regex or grammar it cannot compile as INVALID_ARGUMENT (→ 400).
"""

from __future__ import annotations

import json
from typing import Any

from http_bridge.schemas.common import SamplingRequest
from http_bridge.schemas.constraints import STRUCTURED_KINDS
from inference_service.api.v1 import generation_pb2 as pb


def _schema(schema: dict[str, Any]) -> pb.Constraint:
    return pb.Constraint(json_schema=json.dumps(schema, separators=(",", ":"), ensure_ascii=False))


def _choice(choices: list[str]) -> pb.Constraint:
    return pb.Constraint(choice=pb.ChoiceList(choices=choices))


def to_constraint(body: SamplingRequest) -> pb.Constraint | None:
    """The request's constraint, or None when its output is free."""
    fmt = body.response_format
    if fmt is not None and fmt.type == "json_object":
        return pb.Constraint(json_object=True)
    if fmt is not None and fmt.json_schema is not None and fmt.type == "json_schema":
        return _schema(fmt.json_schema.schema_)
    structured = body.structured_outputs
    if structured is not None:  # vLLM's newer form of the guided_* fields: the same kinds
        return _kind(structured.json_, structured.json_object, structured.regex, structured.choice, structured.grammar)
    return _kind(body.guided_json, False, body.guided_regex, body.guided_choice, body.guided_grammar)


def _kind(
    schema: dict[str, Any] | None,
    json_object: bool | None,
    regex: str | None,
    choice: list[str] | None,
    lark: str | None,
) -> pb.Constraint | None:
    if schema is not None:
        return _schema(schema)
    if json_object:
        return pb.Constraint(json_object=True)
    if regex is not None:
        return pb.Constraint(regex=regex)
    if choice is not None:
        return _choice(choice)
    return pb.Constraint(lark=lark) if lark is not None else None


def constraint_param(body: SamplingRequest) -> str | None:
    """The request field the constraint came from, to name it in errors the service reports as `constraint`."""
    given = body.constraint_fields()
    if not given:
        return None
    if given[0] == "response_format" and body.response_format is not None and body.response_format.json_schema:
        return "response_format.json_schema.schema"
    structured = body.structured_outputs
    if given[0] == "structured_outputs" and structured is not None:
        kind = next(k for k in STRUCTURED_KINDS if structured.kind_value(k) not in (None, False))
        return f"structured_outputs.{kind}"
    return given[0]
