"""Fakes for engine unit tests: a deterministic runner over a real (tiny) KV cache, and a character tokenizer."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from inference_service.engine.kv_cache import KVCache, KVLayout

VOCAB = 32
EOS = 0


class FakeRunner:
    """The next token after t is (t + 1) % VOCAB, except after `eos_after` it is EOS. Records every call."""

    def __init__(self, num_slots: int = 4, capacity: int = 64, budget_tokens: int = 0) -> None:
        layout = KVLayout(num_layers=1, num_slots=num_slots, kv_heads=1, slot_capacity=capacity, head_size=1)
        self.kv = KVCache(layout, budget_tokens=budget_tokens)
        self.calls: list[tuple[int, int, int]] = []  # (first_slot, batch, seq)
        self.fail_next = False
        self.delay = 0.0  # seconds per forward pass, to keep requests running in async tests

    @property
    def slot_capacity(self) -> int:
        return self.kv.layout.slot_capacity

    def forward(
        self,
        input_ids: np.ndarray,
        lengths: np.ndarray,
        first_slot: int,
        last: np.ndarray | None = None,
        every_position: bool = False,
    ) -> np.ndarray:
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("injected failure")
        time.sleep(self.delay)
        batch, seq = input_ids.shape
        self.calls.append((first_slot, batch, seq))
        if every_position:  # every position's next token, row-major
            flat = input_ids.reshape(-1)
            logits = np.zeros((flat.shape[0], VOCAB), np.float32)
            logits[np.arange(flat.shape[0]), (flat + 1) % VOCAB] = 10.0
            return logits
        logits = np.zeros((batch, VOCAB), np.float32)
        final = input_ids[np.arange(batch), seq - 1 if last is None else last]  # each row's last real token
        logits[np.arange(batch), (final + 1) % VOCAB] = 10.0
        return logits


class FakeTokenizer:
    """Token t is the letter chr(ord('a') + t); EOS decodes to nothing."""

    vocab_size = VOCAB
    eos_token_ids = (EOS,)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return "".join("" if t == EOS else chr(ord("a") + t) for t in ids)

    def token_bytes(self, token_id: int) -> bytes:
        return self.decode([token_id]).encode()

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [(ord(c) - ord("a")) % VOCAB for c in text]

    def apply_chat_template(
        self, messages: Sequence[object], add_generation_prompt: bool = True, tools: Sequence[object] = ()
    ) -> str:
        return "".join(getattr(m, "content", "") for m in messages)
