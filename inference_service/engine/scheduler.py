"""Admission and per-step work selection.

A step runs one decode pass over the dense slot range [0, span), where span covers every sequence that is
decoding (one pending token). Each sequence inside that range advances by one token: its last sampled token, or
the next token of a prompt still being prefilled; free slots in the range get a dummy token. The step's remaining
token budget goes to prefill chunks of sequences with prompt tokens still pending, oldest first, so a long prompt
is spread over several steps instead of stalling everyone else's decode.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from inference_service.engine.kv_cache import KVCache
from inference_service.engine.sequence import Sequence, SequenceStatus


@dataclass(slots=True, frozen=True)
class SchedulerConfig:
    max_batched_tokens: int = 512  # tokens per step across decode rows and prefill chunks
    max_waiting: int = 1024
    max_queue_wait_s: float = 0.0  # waiting longer than this for a slot fails the request; 0 = no limit


@dataclass(slots=True, frozen=True)
class PrefillChunk:
    seq: Sequence
    num_tokens: int  # tokens run in this chunk, after this step's decode row


@dataclass(slots=True)
class ScheduleOutput:
    decode_span: int  # run slots [0, span) in the decode pass; 0 = no decode pass
    prefill: list[PrefillChunk]


class Scheduler:
    def __init__(self, config: SchedulerConfig, kv: KVCache) -> None:
        self.config = config
        self.kv = kv
        self.waiting: deque[Sequence] = deque()
        self.running: dict[int, Sequence] = {}  # slot → sequence
        self.on_admit: Callable[[Sequence], None] | None = None  # e.g. restore a cached prompt prefix

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def can_add(self, count: int) -> bool:
        return len(self.waiting) + count <= self.config.max_waiting

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def expire_waiting(self, now: float) -> list[Sequence]:
        """Take out waiting sequences that have waited too long (FIFO: the oldest are at the front)."""
        limit = self.config.max_queue_wait_s
        expired = []
        while limit and self.waiting and now - self.waiting[0].request.arrival_time > limit:
            seq = self.waiting.popleft()
            seq.status = SequenceStatus.FINISHED
            expired.append(seq)
        return expired

    def schedule(self) -> ScheduleOutput:
        while self.waiting and self.kv.can_allocate():
            seq = self.waiting.popleft()
            seq.slot = self.kv.allocate()
            seq.status = SequenceStatus.RUNNING
            seq.scheduled_time = time.monotonic()
            self.running[seq.slot] = seq
            if self.on_admit is not None:
                self.on_admit(seq)
        decoding = [slot for slot, seq in self.running.items() if seq.num_pending == 1]
        span = max(decoding) + 1 if decoding else 0
        budget = self.config.max_batched_tokens - span
        prefill = []
        for seq in sorted(self.running.values(), key=lambda s: s.seq_id):
            assert seq.slot is not None
            remaining = seq.num_pending - (1 if seq.slot < span else 0)  # the decode pass takes one
            if remaining > 0 and budget > 0:
                take = min(remaining, budget)
                prefill.append(PrefillChunk(seq, take))
                budget -= take
        return ScheduleOutput(span, prefill)

    def finish(self, seq: Sequence) -> None:
        """Take a finished or aborted sequence out, freeing its slot."""
        if seq.slot is not None:
            del self.running[seq.slot]
            self.kv.free(seq.slot)
            seq.slot = None
        elif seq.status is SequenceStatus.WAITING:
            self.waiting.remove(seq)
        seq.status = SequenceStatus.FINISHED


def group_prefill(chunks: list[PrefillChunk], max_padding: float = 0.25) -> list[list[PrefillChunk]]:
    """Batch chunks of fresh prompts in consecutive slots into one forward pass (right-padded).

    GroupQueryAttention batches prompts only when nothing is cached yet (batch > 1 with past context is not
    supported), and rows must be consecutive slots: a gap row would write padding into another sequence's KV.
    A row joins while the padded work stays within `max_padding` of the real tokens.
    """
    groups: list[list[PrefillChunk]] = []
    for chunk in sorted(chunks, key=lambda c: c.seq.slot or 0):
        group = groups[-1] if groups else None
        fresh = chunk.seq.num_cached == 0
        if group is not None and fresh and all(c.seq.num_cached == 0 for c in group):
            candidate = [*group, chunk]
            width = max(c.num_tokens for c in candidate)
            real = sum(c.num_tokens for c in candidate)
            consecutive = chunk.seq.slot == (group[-1].seq.slot or 0) + 1
            if consecutive and width * len(candidate) <= (1 + max_padding) * real:
                group.append(chunk)
                continue
        groups.append([chunk])
    return groups
