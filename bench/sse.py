"""Incremental Server-Sent Events parsing for OpenAI-style chat-completion streams (pure, no I/O)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

DONE = "[DONE]"  # the payload OpenAI streams end with


@dataclass(slots=True)
class ChatDelta:
    """What one `chat.completion.chunk` event carries that the benchmark cares about."""

    content: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    error: str | None = None
    done: bool = False  # the `data: [DONE]` sentinel


class SSEDecoder:
    """Feed lines (without the newline); get the `data` payload of each completed event."""

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> str | None:
        line = line.rstrip("\r")
        if not line:  # blank line ends the event
            if not self._data:
                return None
            payload, self._data = "\n".join(self._data), []
            return payload
        if line.startswith(":"):  # comment / keep-alive
            return None
        name, _, value = line.partition(":")
        if name == "data":
            self._data.append(value[1:] if value.startswith(" ") else value)
        return None


def iter_payloads(lines: Iterable[str]) -> Iterator[str]:
    """The `data` payload of each completed event, as lines arrive (`iter_lines()`: blank lines included)."""
    decoder = SSEDecoder()
    for line in lines:
        payload = decoder.feed(line)
        if payload is not None:
            yield payload


def body_payloads(body: str) -> list[str]:
    """The `data` payloads of a whole SSE body (split on "\n" only: JSON may hold U+2028, which `splitlines` splits)."""
    return list(iter_payloads(body.split("\n")))


def json_or_done(payload: str) -> object:
    """A payload decoded from JSON, or the `[DONE]` sentinel kept as the string."""
    return payload if payload == DONE else json.loads(payload)


def parse_chat_event(payload: str) -> ChatDelta:
    """Interpret one event's data as a chat-completion chunk, an error event, or `[DONE]`."""
    if payload.strip() == DONE:
        return ChatDelta(done=True)
    body = json.loads(payload)
    if not isinstance(body, dict):
        return ChatDelta(error=f"unexpected event: {payload[:200]}")
    if "error" in body:
        error = body["error"]
        message = error.get("message") if isinstance(error, dict) else error
        return ChatDelta(error=str(message))
    delta = ChatDelta()
    for choice in body.get("choices") or ():
        content = (choice.get("delta") or {}).get("content")
        if content:
            delta.content += content
        if choice.get("finish_reason"):
            delta.finish_reason = choice["finish_reason"]
    usage = body.get("usage")
    if isinstance(usage, dict):
        delta.prompt_tokens = usage.get("prompt_tokens")
        delta.completion_tokens = usage.get("completion_tokens")
    return delta
