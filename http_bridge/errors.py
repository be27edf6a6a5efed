"""Typed bridge errors, the one gRPC → HTTP mapping table, and the exception handlers (registered once)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from google.rpc import error_details_pb2, status_pb2
from starlette.exceptions import HTTPException as StarletteHTTPException

from http_bridge.schemas.errors import ErrorBody, ErrorResponse

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HttpMapping:
    status: int
    type: str
    code: str | None = None


GRPC_TO_HTTP: dict[grpc.StatusCode, HttpMapping] = {
    grpc.StatusCode.INVALID_ARGUMENT: HttpMapping(400, "invalid_request_error"),
    grpc.StatusCode.OUT_OF_RANGE: HttpMapping(400, "invalid_request_error"),
    grpc.StatusCode.NOT_FOUND: HttpMapping(404, "invalid_request_error", "model_not_found"),
    grpc.StatusCode.UNAUTHENTICATED: HttpMapping(401, "authentication_error"),
    grpc.StatusCode.PERMISSION_DENIED: HttpMapping(403, "permission_error"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: HttpMapping(429, "rate_limit_error"),
    grpc.StatusCode.UNAVAILABLE: HttpMapping(503, "server_error"),
    grpc.StatusCode.DEADLINE_EXCEEDED: HttpMapping(504, "timeout"),
}
UNMAPPED = HttpMapping(500, "server_error")
DEFAULT_RETRY_AFTER_S = 1


class BridgeError(Exception):
    """An error with its HTTP status and OpenAI error fields; raised by routes and dependencies."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        type: str,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> ErrorResponse:
        return ErrorResponse(error=ErrorBody(message=self.message, type=self.type, param=self.param, code=self.code))


class AuthenticationError(BridgeError):
    def __init__(self, message: str) -> None:
        super().__init__(
            message,
            status=401,
            type="authentication_error",
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )


class UpstreamTimeoutError(BridgeError):
    def __init__(self, message: str) -> None:
        super().__init__(message, status=504, type="timeout")


class UpstreamProtocolError(BridgeError):
    """The inference service broke the contract (e.g. an empty stream): a bug, so 500."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=500, type="server_error")


def _status_details(trailing: Sequence[tuple[str, Any]] | None) -> status_pb2.Status | None:
    for key, value in trailing or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            status = status_pb2.Status()
            status.ParseFromString(value)
            return status
    return None


def from_rpc_error(exc: grpc.aio.AioRpcError) -> BridgeError:
    """Map a gRPC status (+ google.rpc details: ErrorInfo, BadRequest, RetryInfo) to a BridgeError."""
    mapping = GRPC_TO_HTTP.get(exc.code(), UNMAPPED)
    message = exc.details() or exc.code().name.lower()
    code, param, retry_after = mapping.code, None, None
    status = _status_details(exc.trailing_metadata())
    for any_detail in status.details if status is not None else ():
        if any_detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            any_detail.Unpack(info)
            code = info.reason.lower() or code
            param = info.metadata.get("param") or param
        elif any_detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            any_detail.Unpack(bad)
            if bad.field_violations:
                param = bad.field_violations[0].field
        elif any_detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            any_detail.Unpack(retry)
            retry_after = retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9
    headers = {}
    if mapping.status == 429:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after or DEFAULT_RETRY_AFTER_S)))
    return BridgeError(message, status=mapping.status, type=mapping.type, code=code, param=param, headers=headers)


def error_event(exc: BaseException) -> dict[str, Any]:
    """The payload of the SSE error event sent when a stream fails after it started."""
    error = from_rpc_error(exc) if isinstance(exc, grpc.aio.AioRpcError) else internal_error()
    return error.body().model_dump()


def internal_error() -> BridgeError:
    return BridgeError("Internal server error", status=500, type="server_error")


def _param_of(loc: Sequence[int | str]) -> str | None:
    parts = list(loc[1:] if loc and loc[0] == "body" else loc)
    path = ""
    for part in parts:
        if part == "[key]":  # pydantic's marker for a bad dict key; the key itself is already in the path
            continue
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or None


def from_validation_error(exc: RequestValidationError) -> BridgeError:
    errors = list(exc.errors())
    if not errors:
        return BridgeError("Invalid request", status=400, type="invalid_request_error")
    first = errors[0]
    if first.get("type") == "json_invalid":
        return BridgeError(
            "We could not parse the JSON body of your request. Send valid JSON.",
            status=400,
            type="invalid_request_error",
        )
    loc = first.get("loc", ())
    param = _param_of(loc) if len(loc) > 1 or (loc and loc[0] != "body") else None
    # Cross-field checks run on a whole model (loc = the model): they name the field in the error's context.
    named = (first.get("ctx") or {}).get("param")
    param = named if isinstance(named, str) else param
    message = str(first.get("msg", "Invalid request"))
    message = f"Invalid '{param}': {message}" if param is not None else f"Invalid request body: {message}"
    error_type = str(first.get("type", ""))
    code = error_type if error_type.startswith("unsupported_") else None
    return BridgeError(message, status=400, type="invalid_request_error", code=code, param=param)


def _respond(error: BridgeError) -> JSONResponse:
    return JSONResponse(error.body().model_dump(), status_code=error.status, headers=error.headers)


async def _bridge_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BridgeError)
    return _respond(exc)


def name_upstream_params(request: Request, names: dict[str, str]) -> None:
    """Params the inference service reports in proto terms (e.g. `constraint`) → this request's OpenAI field
    (e.g. `response_format.json_schema.schema`); read by the gRPC error handler."""
    request.state.upstream_params = names


async def _rpc_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, grpc.aio.AioRpcError)
    error = from_rpc_error(exc)
    names: dict[str, str] = getattr(request.state, "upstream_params", {})
    error.param = names.get(error.param or "", error.param)
    log = logger.error if error.status >= 500 else logger.info
    log("inference service returned %s: %s", exc.code().name, exc.details())
    return _respond(error)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    error = from_validation_error(exc)
    if error.param is None and "json" not in request.headers.get("content-type", ""):
        error.message += " (send a JSON body with 'Content-Type: application/json')"
    logger.info("rejected request: %s", error.message)
    return _respond(error)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    kinds = {401: "authentication_error", 403: "permission_error", 404: "invalid_request_error"}
    error_type = kinds.get(exc.status_code, "invalid_request_error" if exc.status_code < 500 else "server_error")
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
    error = BridgeError(
        str(exc.detail), status=exc.status_code, type=error_type, code=code, headers=dict(exc.headers or {})
    )
    return _respond(error)


def register_exception_handlers(app: FastAPI) -> None:
    app.add_exception_handler(BridgeError, _bridge_error)
    app.add_exception_handler(grpc.aio.AioRpcError, _rpc_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
