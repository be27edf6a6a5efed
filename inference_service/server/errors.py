"""The one place engine errors become gRPC statuses (with google.rpc details)."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from inference_service.engine.errors import (
    EngineError,
    EngineUnavailableError,
    InvalidRequestError,
    ModelNotFoundError,
    QueueFullError,
    QueueTimeoutError,
)

DOMAIN = "ortserve"


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def to_status(error: EngineError) -> grpc.Status:
    details = []
    if isinstance(error, InvalidRequestError):
        code = code_pb2.INVALID_ARGUMENT
        if error.param:
            violation = error_details_pb2.BadRequest.FieldViolation(field=error.param, description=str(error))
            details.append(_pack(error_details_pb2.BadRequest(field_violations=[violation])))
        if error.code:
            details.append(_pack(error_details_pb2.ErrorInfo(reason=error.code, domain=DOMAIN)))
    elif isinstance(error, ModelNotFoundError):
        code = code_pb2.NOT_FOUND
        details.append(_pack(error_details_pb2.ErrorInfo(reason="model_not_found", domain=DOMAIN)))
    elif isinstance(error, QueueFullError):
        code = code_pb2.RESOURCE_EXHAUSTED
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(int(error.retry_after_seconds * 1000))
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    elif isinstance(error, EngineUnavailableError):
        code = code_pb2.UNAVAILABLE
    elif isinstance(error, QueueTimeoutError):
        code = code_pb2.DEADLINE_EXCEEDED
    else:
        code = code_pb2.INTERNAL
    return rpc_status.to_status(status_pb2.Status(code=code, message=str(error), details=details))
