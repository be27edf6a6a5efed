"""Admission and per-step work selection.

A step runs one decode pass over the slot range [start, span) from the lowest to the highest slot of a sequence that
is decoding (one pending token). Each sequence inside that range advances by one token: its last sampled token, or
the next token of a prompt still being prefilled; free slots in the range get a dummy token. The step's remaining
token budget goes to prefill chunks of sequences with prompt tokens still pending, so a long prompt is spread over
several steps instead of stalling everyone else's decode.

Fair prefill (`long_prefill_token_threshold` T > 0): no prompt runs more than T tokens in one step, and at most
`max_num_partial_prefills` P prompts get a chunk in one step, within the budget, in this order: the oldest long
prompt (more than T tokens pending), so it progresses every step; then short prompts (T or fewer pending), oldest
first, each all at once; then the other long prompts, oldest first. So a short prompt's first token never waits for
a long prompt's prefill, and a step's prefill work stays within P × T tokens, whatever the prompts' lengths. With
T = 0, chunks go oldest first, each as large as the budget allows.

KV memory is a token budget (KVCache.budget_tokens): a waiting sequence is admitted when a slot is free and its
tokens fit, with one token of headroom per running sequence for the next decode step. When running sequences
outgrow the budget anyway, the newest is preempted: its slot is freed and it waits again at the front of the
queue, to be recomputed from its tokens (prompt + output so far) when it is readmitted — as vLLM does.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass

from inference_service.engine.kv_cache import KVCache
from inference_service.engine.prefix_cache import PrefixCache
from inference_service.engine.sequence import Sequence, SequenceStatus

logger = logging.getLogger(__name__)


@dataclass(slots=True, frozen=True)
class SchedulerConfig:
    max_batched_tokens: int = 512  # tokens per step across decode rows and prefill chunks
    max_queue_wait_s: float = 0.0  # waiting longer than this for a slot fails the request; 0 = no limit
    long_prefill_token_threshold: int = 128  # at most this many tokens of a prompt per step; 0 = oldest first, uncapped
    max_num_partial_prefills: int = 4  # prompts that get a chunk in one step (when the threshold is on); ≥ 2


@dataclass(slots=True, frozen=True)
class PrefillChunk:
    seq: Sequence
    num_tokens: int  # tokens run in this chunk, after this step's decode row


@dataclass(slots=True)
class ScheduleOutput:
    decode_span: int  # run slots [decode_start, span) in the decode pass; 0 = no decode pass
    prefill: list[PrefillChunk]
    # the lowest decoding slot: a prompt still prefilling below it (a long one admitted first) stays out of the
    # decode pass, whose rows would otherwise each attend over its whole context
    decode_start: int = 0

    def decodes(self, slot: int) -> bool:
        return self.decode_start <= slot < self.decode_span


class Scheduler:
    def __init__(self, config: SchedulerConfig, kv: KVCache, prefix_cache: PrefixCache | None = None) -> None:
        self.config = config
        self.kv = kv
        self.prefix_cache = prefix_cache  # an admitted prompt starts from its longest cached prefix
        self.waiting: deque[Sequence] = deque()
        self.running: dict[int, Sequence] = {}  # slot → sequence
        self.num_preemptions = 0

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def expire_waiting(self, now: float) -> list[Sequence]:
        """Take out never-scheduled sequences that have waited too long (preempted ones already streamed)."""
        limit = self.config.max_queue_wait_s
        if not limit:
            return []
        expired = [s for s in self.waiting if s.scheduled_time is None and now - s.request.arrival_time > limit]
        for seq in expired:
            self.waiting.remove(seq)
            seq.status = SequenceStatus.FINISHED
        return expired

    @property
    def running_tokens(self) -> int:
        """Tokens the running sequences hold or are computing (each one's prompt + output so far)."""
        return sum(len(seq.token_ids) for seq in self.running.values())

    def _fits(self, seq: Sequence, used: int) -> bool:
        return used + len(seq.token_ids) + len(self.running) + 1 <= self.kv.budget_tokens

    def _preempt_to_fit(self) -> int:
        used = self.running_tokens
        while len(self.running) > 1 and used > self.kv.budget_tokens:
            victim = max(self.running.values(), key=lambda s: s.seq_id)  # the newest gives way
            used -= len(victim.token_ids)
            self.preempt(victim)
        return used

    def preempt(self, seq: Sequence) -> None:
        """Free a running sequence's slot; it waits at the front and is recomputed from its tokens later."""
        assert seq.slot is not None
        del self.running[seq.slot]
        self.kv.free(seq.slot)
        seq.slot, seq.num_cached, seq.status = None, 0, SequenceStatus.WAITING
        self.waiting.appendleft(seq)
        self.num_preemptions += 1
        logger.info(
            "preempted request %s choice %d (%d tokens): KV budget of %d tokens is full; it will be recomputed",
            seq.request.request_id,
            seq.index,
            len(seq.token_ids),
            self.kv.budget_tokens,
        )

    def schedule(self, draft_tokens: int = 0) -> ScheduleOutput:
        used = self._preempt_to_fit()
        while self.waiting and self.kv.can_allocate() and (not self.running or self._fits(self.waiting[0], used)):
            seq = self.waiting.popleft()
            used += len(seq.token_ids)
            seq.slot = self.kv.allocate()
            seq.status = SequenceStatus.RUNNING
            readmitted = seq.scheduled_time is not None
            seq.scheduled_time = seq.scheduled_time or time.monotonic()
            self.running[seq.slot] = seq
            if self.prefix_cache is not None:
                seq.num_cached = self.prefix_cache.restore(seq.token_ids[: seq.num_prompt_tokens], seq.slot)
            self._log_admitted(seq, readmitted)
        decoding = [slot for slot, seq in self.running.items() if seq.num_pending == 1]
        span = max(decoding) + 1 if decoding else 0
        start = min(decoding) if decoding else 0
        # drafts verified this step (engine/speculative.py) take their tokens from the budget too
        budget = self.config.max_batched_tokens - (span - start) - draft_tokens
        plan = ScheduleOutput(span, [], start)
        plan.prefill = self._plan_prefill(plan, budget)
        if logger.isEnabledFor(logging.DEBUG):
            for chunk in plan.prefill:
                self._log_chunk(chunk, plan)
        return plan

    def _plan_prefill(self, plan: ScheduleOutput, budget: int) -> list[PrefillChunk]:
        """Prompt chunks for this step, after the plan's decode pass (which takes one token of each of its rows)."""
        pending: list[tuple[Sequence, int]] = []  # (sequence, tokens left after the decode pass), oldest first
        for seq in sorted(self.running.values(), key=lambda s: s.seq_id):
            assert seq.slot is not None
            remaining = seq.num_pending - (1 if plan.decodes(seq.slot) else 0)
            if remaining > 0:
                pending.append((seq, remaining))
        threshold = self.config.long_prefill_token_threshold
        if threshold:
            long = [p for p in pending if p[1] > threshold]
            short = [p for p in pending if p[1] <= threshold]
            # the oldest long prompt first (it progresses every step), then short ones, then other long ones
            pending = (long[:1] + short + long[1:])[: self.config.max_num_partial_prefills]
        prefill = []
        for seq, remaining in pending:
            take = min(remaining, threshold or remaining, budget)
            if take <= 0:
                break
            prefill.append(PrefillChunk(seq, take))
            budget -= take
        return prefill

    def _log_admitted(self, seq: Sequence, readmitted: bool) -> None:
        assert seq.scheduled_time is not None
        logger.debug(
            "request %s choice %d %s slot %d, %.3f s after arrival: %d tokens, %d of them from the prefix cache",
            seq.request.request_id,
            seq.index,
            "readmitted (after preemption) to" if readmitted else "admitted to",
            seq.slot,
            (time.monotonic() if readmitted else seq.scheduled_time) - seq.request.arrival_time,
            len(seq.token_ids),
            seq.num_cached,
        )

    def _log_chunk(self, chunk: PrefillChunk, plan: ScheduleOutput) -> None:
        seq = chunk.seq
        assert seq.slot is not None
        done = seq.num_cached + chunk.num_tokens + (1 if plan.decodes(seq.slot) else 0)
        logger.debug(
            "request %s choice %d prefill: %d tokens this step, %d of %d done",
            seq.request.request_id,
            seq.index,
            chunk.num_tokens,
            done,
            len(seq.token_ids),
        )

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
