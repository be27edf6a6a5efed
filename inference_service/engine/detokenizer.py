"""Streaming text out of generated tokens: incremental detokenization and stop-string matching."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

# Prompt tokens kept as left context so that decoders which depend on the previous token (SentencePiece's
# leading-space handling) decode the first generated token as they would in the full sequence.
_PROMPT_CONTEXT_TOKENS = 5
# Tokens before prefix_offset are never decoded again; drop them once this many pile up (amortized O(1)).
_TRIM_AFTER = 64
_REPLACEMENT = "\ufffd"


class Decoder(Protocol):
    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str: ...


class IncrementalDetokenizer:
    """Per-sequence detokenizer that only ever emits whole characters.

    vLLM's scheme: decode the window ids[prefix_offset:] and subtract the text of
    ids[prefix_offset:read_offset] (already emitted). If the window ends in U+FFFD, the newest token ends
    inside a UTF-8 sequence, so nothing is emitted until a later token completes it. Each step decodes a
    few tokens: O(1) per token.
    """

    __slots__ = ("_ids", "_prefix_offset", "_read_offset", "_skip_special", "_tokenizer")

    def __init__(
        self, tokenizer: Decoder, prompt_ids: Sequence[int] | None = None, skip_special_tokens: bool = True
    ) -> None:
        self._tokenizer = tokenizer
        self._skip_special = skip_special_tokens
        self._ids: list[int] = list(prompt_ids[-_PROMPT_CONTEXT_TOKENS:]) if prompt_ids else []
        self._prefix_offset = 0
        self._read_offset = len(self._ids)  # ids[prefix_offset:read_offset] is context already emitted

    def step(self, new_token_ids: Iterable[int]) -> str:
        """Append tokens; return the text that became decodable (possibly "")."""
        self._ids.extend(new_token_ids)
        prefix_text, new_text = self._decode_window()
        if len(new_text) <= len(prefix_text) or new_text.endswith(_REPLACEMENT):
            # Nothing new (e.g. a skipped special token) or an incomplete character: wait for more tokens.
            return ""
        self._prefix_offset = self._read_offset
        self._read_offset = len(self._ids)
        if self._prefix_offset > _TRIM_AFTER:
            del self._ids[: self._prefix_offset]
            self._read_offset -= self._prefix_offset
            self._prefix_offset = 0
        return new_text[len(prefix_text) :]

    def flush(self) -> str:
        """At finish: text still held back, which only happens when the tokens end in invalid UTF-8."""
        if self._read_offset == len(self._ids):
            return ""
        prefix_text, new_text = self._decode_window()
        self._prefix_offset = self._read_offset = len(self._ids)
        return new_text[len(prefix_text) :]

    def _decode_window(self) -> tuple[str, str]:
        ids, p, r = self._ids, self._prefix_offset, self._read_offset
        decode = self._tokenizer.decode
        prefix_text = decode(ids[p:r], skip_special_tokens=self._skip_special) if r > p else ""
        return prefix_text, decode(ids[p:], skip_special_tokens=self._skip_special)


class StopMatcher:
    """Finds stop strings in streamed text without ever emitting any part of a matched stop.

    Text whose tail could still grow into a stop string is held back until it either completes a stop or
    can no longer match. Matching picks the stop that ends first (then the longest), so the result does
    not depend on how the text was split into chunks.
    """

    __slots__ = ("_buffer", "_include_stop", "_max_hold", "_prefixes", "_stops", "done")

    def __init__(self, stops: Iterable[str], include_stop_str_in_output: bool = False) -> None:
        self._stops = tuple(dict.fromkeys(s for s in stops if s))
        self._include_stop = include_stop_str_in_output
        # Every proper prefix of every stop: a buffer tail in this set must be held back.
        self._prefixes = frozenset(s[:k] for s in self._stops for k in range(1, len(s)))
        self._max_hold = max((len(s) - 1 for s in self._stops), default=0)
        self._buffer = ""
        self.done = False

    def push(self, text: str) -> tuple[str, str | None]:
        """Feed new text; return (text safe to emit now, matched stop or None). After a match, finish."""
        if self.done:
            return "", None
        if not self._stops:
            return text, None
        buf = self._buffer + text
        match = self._first_match(buf)
        if match is not None:
            start, stop = match
            self.done = True
            self._buffer = ""
            return buf[: start + len(stop)] if self._include_stop else buf[:start], stop
        hold = self._held_suffix_length(buf)
        self._buffer = buf[len(buf) - hold :] if hold else ""
        return buf[: len(buf) - hold], None

    def flush(self) -> str:
        """At finish for another reason: the held-back text, which is part of the output after all."""
        held, self._buffer = self._buffer, ""
        return held

    def _first_match(self, buf: str) -> tuple[int, str] | None:
        # The held buffer never contains a whole stop, so any match ends inside the new text.
        best: tuple[int, int, str] | None = None  # (end, start, stop)
        for stop in self._stops:
            start = buf.find(stop)
            if start >= 0:
                key = (start + len(stop), start, stop)
                if best is None or key < best:
                    best = key
        return None if best is None else (best[1], best[2])

    def _held_suffix_length(self, buf: str) -> int:
        for k in range(min(len(buf), self._max_hold), 0, -1):
            if buf[-k:] in self._prefixes:
                return k
        return 0
