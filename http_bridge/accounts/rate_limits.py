"""Per-key rate limits: what a request reserves, OpenAI's x-ratelimit-* headers, and the 429 / 404 errors.

The bridge does not tokenize. At admission a request reserves its prompt estimate plus n × max_tokens per prompt;
the estimate is exact for token-id prompts and a quarter of the UTF-8 bytes otherwise (for chat: of the encoded
ChatInput: roles, contents, tools), the usual ~4 bytes per token of English text. When the request ends the
reservation is replaced by the real usage the inference service reported (the windows: counters.py).
A request without max_tokens reserves its prompt only: its real length is charged when it ends.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass

from http_bridge.accounts.counters import RateLimits, WindowState
from http_bridge.accounts.keys import KeyRecord
from http_bridge.errors import BridgeError
from inference_service.api.v1 import generation_pb2 as pb

BYTES_PER_TOKEN = 4


def prompt_estimate(request: pb.GenerateRequest) -> int:
    kind = request.WhichOneof("input")
    if kind == "token_ids":
        return len(request.token_ids.ids)
    size = request.chat.ByteSize() if kind == "chat" else len(request.prompt.encode())
    return math.ceil(size / BYTES_PER_TOKEN)


def reservation(requests: Sequence[pb.GenerateRequest]) -> int:
    """Tokens a request reserves at admission: every prompt's estimate + n × max_tokens (when given)."""
    total = 0
    for request in requests:
        total += prompt_estimate(request)
        if request.stopping.HasField("max_tokens"):
            total += max(request.n, 1) * request.stopping.max_tokens
    return total


def format_reset(ms: int) -> str:
    """OpenAI's reset durations: `1s`, `59.5s`, `6m0s`, `1h2m3s`."""
    seconds = max(ms, 0) / 1000
    if seconds < 60:
        return f"{round(seconds, 3):g}s"
    whole = math.ceil(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{hours}h" if hours else "") + f"{minutes}m{secs}s"


@dataclass(frozen=True, slots=True)
class RateLimitSnapshot:
    """A key's window as a request saw it; becomes the x-ratelimit-* headers of its response."""

    limits: RateLimits
    state: WindowState

    def headers(self) -> dict[str, str]:
        headers = {}
        reset = format_reset(self.state.reset_ms)
        if self.limits.rpm is not None:
            headers["x-ratelimit-limit-requests"] = str(self.limits.rpm)
            headers["x-ratelimit-remaining-requests"] = str(max(0, self.limits.rpm - self.state.requests))
            headers["x-ratelimit-reset-requests"] = reset
        if self.limits.tpm is not None:
            headers["x-ratelimit-limit-tokens"] = str(self.limits.tpm)
            headers["x-ratelimit-remaining-tokens"] = str(max(0, self.limits.tpm - self.state.tokens))
            headers["x-ratelimit-reset-tokens"] = reset
        return headers


@dataclass(slots=True)
class KeyWindow:
    """One request's key and the window its admission saw: what middleware.py turns into the x-ratelimit-* headers
    of the response. That middleware opens one per request; authentication (deps.py) fills `key`, Accounting.admit
    `snapshot`."""

    key: KeyRecord | None = None  # None: authentication off, or not reached (health, metrics, playground)
    snapshot: RateLimitSnapshot | None = None


key_window_var: ContextVar[KeyWindow | None] = ContextVar("key_window", default=None)


def current_key_window() -> KeyWindow:
    """The request's KeyWindow (a detached one outside the headers middleware: what is written there is dropped)."""
    return key_window_var.get() or KeyWindow()


def _per_window(limits: RateLimits, unit: str, short: str) -> str:
    if limits.window_ms == 60_000:
        return f"{unit} per min ({short})"
    return f"{unit} per {limits.window_ms / 1000:g} s"


class RateLimitExceededError(BridgeError):
    """429 in OpenAI's shape: `type` "requests" or "tokens", `code` "rate_limit_exceeded", with Retry-After."""

    def __init__(self, snapshot: RateLimitSnapshot, model: str, key_name: str, reserve: int) -> None:
        limits, state = snapshot.limits, snapshot.state
        retry_s = max(1, math.ceil(state.reset_ms / 1000))
        if limits.rpm is not None and state.requests + 1 > limits.rpm:
            kind, what = "requests", _per_window(limits, "requests", "RPM")
            detail = f"Limit {limits.rpm}, Used {state.requests}, Requested 1"
        else:
            assert limits.tpm is not None, "refused without a limit"
            kind, what = "tokens", _per_window(limits, "tokens", "TPM")
            detail = f"Limit {limits.tpm}, Used {state.tokens}, Requested {reserve}"
            if reserve > limits.tpm:
                detail += " (this request alone is over the limit: lower max_tokens or the prompt)"
        message = (
            f"Rate limit reached for {model} on {what} for API key '{key_name}': {detail}. "
            f"Please try again in {format_reset(state.reset_ms)}."
        )
        super().__init__(
            message,
            status=429,
            type=kind,
            code="rate_limit_exceeded",
            headers={"Retry-After": str(retry_s), **snapshot.headers()},
        )
        self.kind = kind


class ModelAccessError(BridgeError):
    """A model this key may not use: 404 as OpenAI answers for a model a key cannot see."""

    def __init__(self, model: str) -> None:
        super().__init__(
            f"The model `{model}` does not exist or you do not have access to it.",
            status=404,
            type="invalid_request_error",
            code="model_not_found",
            param="model",
        )
