"""The published OpenAPI document: FastAPI's, plus the SSE chunk objects of the streaming endpoints and the other
base URLs of the public API (its paths are listed once, under /v1)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from http_bridge.routers.public import BASES, DOCUMENTED_BASE
from http_bridge.schemas.chat import ChatCompletionChunk
from http_bridge.schemas.completions import TextCompletion
from http_bridge.schemas.errors import ErrorResponse

REF = "#/components/schemas/{model}"
# path → the object carried by each `data:` event when the request has stream: true
STREAMED: dict[str, type[BaseModel]] = {
    "/v1/chat/completions": ChatCompletionChunk,
    "/v1/completions": TextCompletion,
}


def build_openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=_describe_bases(), routes=app.routes)
    schema["info"]["x-api-bases"] = list(BASES)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    _, defs = models_json_schema([(model, "serialization") for model in STREAMED.values()], ref_template=REF)
    for name, definition in defs.get("$defs", {}).items():
        components.setdefault(name, definition)
    for path, model in STREAMED.items():
        response = schema["paths"][path]["post"]["responses"]["200"]
        response.setdefault("content", {})["text/event-stream"] = {
            "schema": {"$ref": REF.format(model=model.__name__)},
            "x-sse-data": "each 'data:' line is one such JSON object; the stream ends with 'data: [DONE]'",
        }
    _openai_errors(schema)
    app.openapi_schema = schema
    return schema


def _describe_bases() -> str:
    others = ", ".join(f"`{base or '/'}`" for base in BASES if base != DOCUMENTED_BASE)
    return (
        f"Every `{DOCUMENTED_BASE}/…` path below also answers under the bases {others}, with the same "
        "authentication and limits: e.g. `/chat/completions` and `/v1/inference/chat/completions` are "
        f"`{DOCUMENTED_BASE}/chat/completions`. Clients set the base URL to any of them."
    )


def _openai_errors(schema: dict[str, Any]) -> None:
    """Validation errors are 400s in OpenAI's shape (never FastAPI's 422); /v1 routes take a Bearer key."""
    components = schema["components"]
    for name in ("HTTPValidationError", "ValidationError"):
        components["schemas"].pop(name, None)
    _, defs = models_json_schema([(ErrorResponse, "serialization")], ref_template=REF)
    for name, definition in defs.get("$defs", {}).items():
        components["schemas"].setdefault(name, definition)
    components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    error = {
        "description": "Error in OpenAI's shape",
        "content": {"application/json": {"schema": {"$ref": REF.format(model="ErrorResponse")}}},
    }
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            operation["responses"].pop("422", None)
            if path.startswith("/v1/"):
                operation["responses"]["default"] = error
                operation["security"] = [{"bearer": []}]
