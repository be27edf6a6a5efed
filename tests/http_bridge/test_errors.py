"""gRPC status → HTTP status + OpenAI error fields, one row per code of http_bridge/errors.py's table."""

from __future__ import annotations

from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from http_bridge.errors import from_rpc_error
from tests.http_bridge.fakes import FakeClient, hello, rpc_error

pytestmark = pytest.mark.anyio

BODY: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}

TABLE = [
    (grpc.StatusCode.INVALID_ARGUMENT, 400, "invalid_request_error", None),
    (grpc.StatusCode.OUT_OF_RANGE, 400, "invalid_request_error", None),
    (grpc.StatusCode.NOT_FOUND, 404, "invalid_request_error", "model_not_found"),
    (grpc.StatusCode.UNAUTHENTICATED, 401, "authentication_error", None),
    (grpc.StatusCode.PERMISSION_DENIED, 403, "permission_error", None),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, 429, "rate_limit_error", None),
    (grpc.StatusCode.UNAVAILABLE, 503, "server_error", None),
    (grpc.StatusCode.DEADLINE_EXCEEDED, 504, "timeout", None),
    (grpc.StatusCode.INTERNAL, 500, "server_error", None),
    (grpc.StatusCode.UNKNOWN, 500, "server_error", None),
    (grpc.StatusCode.CANCELLED, 500, "server_error", None),
    (grpc.StatusCode.UNIMPLEMENTED, 500, "server_error", None),
]


@pytest.mark.parametrize(("code", "status", "kind", "error_code"), TABLE)
@pytest.mark.parametrize("stream", [False, True])
async def test_grpc_code_maps_to_http(
    http: httpx.AsyncClient,
    fake: FakeClient,
    code: grpc.StatusCode,
    status: int,
    kind: str,
    error_code: str | None,
    stream: bool,
) -> None:
    fake.script = [rpc_error(code, f"details of {code.name}")]
    response = await http.post("/v1/chat/completions", json={**BODY, "stream": stream})
    assert response.status_code == status
    assert response.json() == {
        "error": {"message": f"details of {code.name}", "type": kind, "param": None, "code": error_code}
    }
    assert ("retry-after" in response.headers) == (status == 429)
    fake.script = hello()
    assert (await http.post("/v1/chat/completions", json=BODY)).status_code == 200


def _packed(*details: Any) -> tuple[tuple[str, bytes], ...]:
    status = status_pb2.Status(code=3, message="m")
    for detail in details:
        packed = any_pb2.Any()
        packed.Pack(detail)
        status.details.append(packed)
    return (("grpc-status-details-bin", status.SerializeToString()),)


def test_rich_details_give_code_param_and_retry_after() -> None:
    info = error_details_pb2.ErrorInfo(reason="CONTEXT_LENGTH_EXCEEDED", metadata={"param": "messages"})
    error = from_rpc_error(rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "too long", _packed(info)))
    assert (error.status, error.code, error.param, error.message) == (
        400,
        "context_length_exceeded",
        "messages",
        "too long",
    )

    bad = error_details_pb2.BadRequest(field_violations=[{"field": "temperature", "description": "x"}])
    assert from_rpc_error(rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "t", _packed(bad))).param == "temperature"

    retry = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=2, nanos=500_000_000))
    limited = from_rpc_error(rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full", _packed(retry)))
    assert limited.headers == {"Retry-After": "3"}
    plain = from_rpc_error(rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full"))
    assert plain.headers == {"Retry-After": "1"}


def test_missing_details_fall_back_to_code_name() -> None:
    error = grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), None)
    assert from_rpc_error(error).message == "unavailable"
