"""Request limits of the bridge (all in BridgeSettings): body size (413), messages, characters, stops, choices (400).

The body limit is middleware.py's BodySizeLimitMiddleware, so an oversized body is refused before it is read or
parsed. The other limits are checked on the validated request; every refusal is an OpenAI-shaped error that names
the param. max_tokens is not capped here: the inference service rejects prompt + max_tokens beyond the model's
context with 400 `context_length_exceeded` (it knows the prompt's token count; the bridge does not).
"""

from __future__ import annotations

from collections.abc import Sequence

from http_bridge.errors import BridgeError
from http_bridge.schemas.chat import ChatCompletionRequest
from http_bridge.schemas.common import SamplingRequest
from http_bridge.schemas.completions import CompletionRequest
from http_bridge.settings import BridgeSettings


class RequestLimitError(BridgeError):
    def __init__(self, message: str, *, param: str, code: str | None = None) -> None:
        super().__init__(message, status=400, type="invalid_request_error", code=code, param=param)


class BodyTooLargeError(BridgeError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            f"The request body is larger than the limit of {limit} bytes.",
            status=413,
            type="invalid_request_error",
            code="request_too_large",
        )


def _too_long(param: str, limit: int, length: int) -> RequestLimitError:
    return RequestLimitError(
        f"Invalid '{param}': string too long. Expected a string with maximum length {limit}, "
        f"but got a string with length {length} instead.",
        param=param,
        code="string_above_max_length",
    )


def _too_many(param: str, limit: int, length: int) -> RequestLimitError:
    return RequestLimitError(
        f"Invalid '{param}': array too long. Expected an array with maximum length {limit}, "
        f"but got an array with length {length} instead.",
        param=param,
        code="array_above_max_length",
    )


def _check_stop(body: SamplingRequest, settings: BridgeSettings) -> None:
    stops: Sequence[str] = body.stop or ()
    if len(stops) > settings.max_stop_sequences:
        raise _too_many("stop", settings.max_stop_sequences, len(stops))
    for i, stop in enumerate(stops):
        if len(stop) > settings.max_stop_chars:
            raise _too_long(f"stop[{i}]", settings.max_stop_chars, len(stop))


def _check_choices(choices: int, settings: BridgeSettings) -> None:
    if choices > settings.max_choices:
        raise RequestLimitError(
            f"Invalid 'n': this request asks for {choices} choices (n × prompts); the limit is {settings.max_choices}.",
            param="n",
        )


def check_chat(body: ChatCompletionRequest, settings: BridgeSettings) -> None:
    """Raise RequestLimitError when a chat request is beyond the configured limits."""
    if len(body.messages) > settings.max_messages:
        raise _too_many("messages", settings.max_messages, len(body.messages))
    for i, message in enumerate(body.messages):
        length = len(message.text())
        if length > settings.max_message_chars:
            raise _too_long(f"messages[{i}].content", settings.max_message_chars, length)
    _check_stop(body, settings)
    _check_choices(body.n, settings)


def check_completion(body: CompletionRequest, settings: BridgeSettings) -> None:
    """Raise RequestLimitError when a text completion request is beyond the configured limits."""
    prompts = body.prompts()
    for i, prompt in enumerate(prompts):
        if isinstance(prompt, str) and len(prompt) > settings.max_message_chars:
            raise _too_long("prompt" if len(prompts) == 1 else f"prompt[{i}]", settings.max_message_chars, len(prompt))
    _check_stop(body, settings)
    _check_choices(body.n * len(prompts), settings)
