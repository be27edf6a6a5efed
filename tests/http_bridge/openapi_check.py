"""Validate JSON instances against a component of the bridge's published OpenAPI document (JSON Schema 2020-12)."""

from __future__ import annotations

import json
from typing import Any

import jsonschema

from bench.sse import DONE, body_payloads


def validate(openapi: dict[str, Any], component: str, instance: object) -> None:
    """Raise jsonschema.ValidationError when `instance` does not match `#/components/schemas/<component>`."""
    root = {**openapi, "$ref": f"#/components/schemas/{component}"}
    jsonschema.Draft202012Validator(root).validate(instance)


def is_valid(openapi: dict[str, Any], component: str, instance: object) -> bool:
    try:
        validate(openapi, component, instance)
    except jsonschema.ValidationError:
        return False
    return True


def sse_data(body: str) -> list[Any]:
    """JSON payloads of an SSE body (without the final [DONE])."""
    return [json.loads(payload) for payload in body_payloads(body) if payload != DONE]
