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
    if structured is not None:
        if structured.json_ is not None:
            return _schema(structured.json_)
        if structured.json_object:
            return pb.Constraint(json_object=True)
        if structured.regex is not None:
            return pb.Constraint(regex=structured.regex)
        if structured.choice is not None:
            return _choice(structured.choice)
        if structured.grammar is not None:
            return pb.Constraint(lark=structured.grammar)
    if body.guided_json is not None:
        return _schema(body.guided_json)
    if body.guided_regex is not None:
        return pb.Constraint(regex=body.guided_regex)
    if body.guided_choice is not None:
        return _choice(body.guided_choice)
    if body.guided_grammar is not None:
        return pb.Constraint(lark=body.guided_grammar)
    return None


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
