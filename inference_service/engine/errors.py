"""Typed engine errors; the server maps each to one gRPC status (server/errors.py)."""


class EngineError(Exception):
    """Base class of errors the engine reports to callers."""


class InvalidRequestError(EngineError):
    """The request is malformed or out of range (gRPC INVALID_ARGUMENT)."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        self.code = code


class ContextLengthExceededError(InvalidRequestError):
    def __init__(self, message: str) -> None:
        super().__init__(message, param="messages", code="context_length_exceeded")


class ModelNotFoundError(EngineError):
    """Unknown model id (gRPC NOT_FOUND)."""


class QueueFullError(EngineError):
    """No room to admit the request (gRPC RESOURCE_EXHAUSTED)."""

    def __init__(self, message: str, retry_after_seconds: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class QueueTimeoutError(EngineError):
    """The request waited for a KV slot longer than the configured limit (gRPC DEADLINE_EXCEEDED)."""


class EngineUnavailableError(EngineError):
    """The engine is stopping or its loop died (gRPC UNAVAILABLE)."""


class EngineInternalError(EngineError):
    """A bug or a runtime failure inside a step (gRPC INTERNAL)."""
