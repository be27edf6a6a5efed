"""Fakes for engine unit tests: a deterministic runner over a real (tiny) KV cache, a character tokenizer and a
one-script grammar; and the helpers that drive an EngineCore over them."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, cast

import numpy as np

from inference_service.engine.core import EngineCore
from inference_service.engine.kv_cache import KVCache, KVLayout
from inference_service.engine.scheduler import SchedulerConfig
from inference_service.engine.types import (
    ChoiceOutput,
    Failure,
    FinishReason,
    GenerationRequest,
    SamplingParams,
    StoppingParams,
)

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


class ScriptMatcher:
    """A grammar whose language is one token sequence (a stand-in for llguidance's matcher)."""

    def __init__(self, script: list[int], fail_at: int | None) -> None:
        self.script, self.fail_at, self.pos = script, fail_at, 0

    def allowed(self) -> np.ndarray:
        if self.pos == self.fail_at:
            raise RuntimeError("step fuel exhausted")
        mask = np.zeros(VOCAB, bool)
        mask[self.script[self.pos]] = True
        return mask

    def consume(self, token: int) -> None:
        assert token == self.script[self.pos]
        self.pos += 1

    @property
    def stopped(self) -> bool:
        return self.pos == len(self.script)


class ScriptGrammar:
    def __init__(self, script: list[int], fail_at: int | None = None) -> None:
        self.script, self.fail_at = script, fail_at

    def matcher(self) -> ScriptMatcher:
        return ScriptMatcher(self.script, self.fail_at)


GREEDY = SamplingParams(temperature=0.0)


def make_core(num_slots: int = 4, capacity: int = 64, max_batched_tokens: int = 512) -> tuple[EngineCore, FakeRunner]:
    runner = FakeRunner(num_slots, capacity)
    core = EngineCore(runner, cast(Any, FakeTokenizer()), (EOS,), SchedulerConfig(max_batched_tokens), pad_token_id=0)
    return core, runner


def req(rid: str, prompt: list[int], max_tokens: int | None = 5, **kw: Any) -> GenerationRequest:
    stopping = kw.pop("stopping", StoppingParams(max_tokens=max_tokens))
    return GenerationRequest(rid, prompt, kw.pop("sampling", GREEDY), stopping, **kw)


def run(
    core: EngineCore, max_steps: int = 200, failures: list[Failure] | None = None
) -> dict[tuple[str, int], list[ChoiceOutput]]:
    """Step until done: each choice's outputs; the steps' failures go to `failures`."""
    outputs: dict[tuple[str, int], list[ChoiceOutput]] = {}
    for _ in range(max_steps):
        if not core.has_work:
            break
        result = core.step()
        for out in result.outputs:
            outputs.setdefault((out.request_id, out.index), []).append(out)
        if failures is not None:
            failures += result.failures
    assert not core.has_work
    return outputs


def generated_ids(core: EngineCore, requests: list[GenerationRequest], together: bool) -> list[list[int]]:
    """Each request's generated token ids: all added at once, or each run to its end before the next is added."""
    outputs: dict[tuple[str, int], list[ChoiceOutput]] = {}
    for request in requests:
        core.add_request(request)
        if not together:
            outputs.update(run(core))
    outputs.update(run(core))
    return [[t for out in outputs[(r.request_id, 0)] for t in out.token_ids] for r in requests]


def text(outs: list[ChoiceOutput]) -> str:
    return "".join(o.text for o in outs)


def outcome(outs: list[ChoiceOutput]) -> tuple[list[int], str, FinishReason | None, str]:
    return [t for o in outs for t in o.token_ids], text(outs), outs[-1].finish_reason, outs[-1].matched_stop
