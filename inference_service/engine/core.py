"""Engine core: add requests, step, report. Runs on the engine thread only; knows nothing of asyncio or gRPC."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import Protocol

import numpy as np

from inference_service.engine.detokenizer import IncrementalDetokenizer, StopMatcher
from inference_service.engine.errors import EngineError, EngineInternalError, InvalidRequestError, QueueTimeoutError
from inference_service.engine.kv_cache import KVCache
from inference_service.engine.lm_head import Row, ScreenedRows, resolve
from inference_service.engine.prefix_cache import PrefixCache, PrefixCacheConfig
from inference_service.engine.sampler import SampleRequest, SampleResult, sample, with_logprobs
from inference_service.engine.scheduler import (
    PrefillChunk,
    ScheduleOutput,
    Scheduler,
    SchedulerConfig,
    group_prefill,
)
from inference_service.engine.sequence import Sequence, SequenceStatus
from inference_service.engine.speculative import Drafter, SpeculativeConfig, choose
from inference_service.engine.tokenizer import Tokenizer
from inference_service.engine.tool_calls import ToolCallParser
from inference_service.engine.types import (
    ChoiceOutput,
    FinishReason,
    GenerationRequest,
    SamplingParams,
    ServerLoad,
    StoppingParams,
    Timing,
    TokenLogprob,
    ToolCallDelta,
    TopLogprob,
)

logger = logging.getLogger(__name__)


class Runner(Protocol):
    kv: KVCache

    @property
    def slot_capacity(self) -> int: ...

    def forward(
        self,
        input_ids: np.ndarray,
        lengths: np.ndarray,
        first_slot: int,
        last: np.ndarray | None = None,
        every_position: bool = False,
    ) -> np.ndarray | ScreenedRows: ...


class EngineCore:
    def __init__(
        self,
        runner: Runner,
        tokenizer: Tokenizer,
        eos_token_ids: tuple[int, ...],
        config: SchedulerConfig,
        pad_token_id: int = 0,
        prefix_cache: PrefixCacheConfig | None = None,
        speculative: SpeculativeConfig | None = None,
    ) -> None:
        self.runner = runner
        self.speculative = speculative or SpeculativeConfig(method="none")
        self.draft_tokens = 0  # drafted tokens verified since start
        self.accepted_tokens = 0  # of them, accepted
        self.tokenizer = tokenizer
        self.eos_token_ids = frozenset(eos_token_ids)
        self.pad_token_id = pad_token_id
        self.scheduler = Scheduler(config, runner.kv)
        self.prefix_cache = PrefixCache(prefix_cache or PrefixCacheConfig(max_entries=0), runner.kv)
        self.scheduler.on_admit = self._restore_prefix
        self._requests: dict[str, list[Sequence]] = {}
        self._seq_ids = itertools.count()
        self._failures: list[tuple[str, EngineError]] = []
        self._stepping: list[str] = []  # requests with a sequence in the current (or last) step
        self.fault_hook: Callable[[Sequence], None] | None = None  # tests inject step failures through it
        self._mask_worker: ThreadPoolExecutor | None = None  # constrained rows' masks, computed during the passes

    @property
    def has_work(self) -> bool:
        return self.scheduler.has_work

    def add_request(self, request: GenerationRequest) -> None:
        seed = request.sampling.seed
        seqs = []
        for index in range(request.n):
            # per-choice generators: same seed → same choices, and choices differ from each other
            generator = np.random.default_rng(None if seed is None else [seed, index])
            seqs.append(
                Sequence(
                    seq_id=next(self._seq_ids),
                    request=request,
                    index=index,
                    token_ids=list(request.prompt_token_ids),
                    num_prompt_tokens=len(request.prompt_token_ids),
                    detokenizer=IncrementalDetokenizer(self.tokenizer, request.prompt_token_ids),
                    stop_matcher=StopMatcher(request.stopping.stop, request.stopping.include_stop_str_in_output),
                    generator=generator,
                    matcher=request.grammar.matcher() if request.grammar is not None else None,
                    tool_parser=ToolCallParser() if request.tool_calls else None,
                    # constrained sequences do not draft: their masks depend on every accepted token
                    drafter=Drafter(self.speculative.ngram)
                    if self.speculative.enabled and request.grammar is None
                    else None,
                )
            )
        self._requests[request.request_id] = seqs
        for seq in seqs:
            self.scheduler.add(seq)

    def abort_request(self, request_id: str) -> list[ChoiceOutput]:
        """Finish the request's unfinished choices as CANCELLED, freeing their slots."""
        outputs = []
        for seq in self._requests.pop(request_id, ()):
            if not seq.is_finished:
                seq.finish_reason = FinishReason.CANCELLED
                self.scheduler.finish(seq)
                outputs.append(
                    ChoiceOutput(
                        request_id,
                        seq.index,
                        "",
                        finish_reason=FinishReason.CANCELLED,
                        prompt_tokens=seq.num_prompt_tokens,
                        completion_tokens=seq.num_generated,
                    )
                )
        return outputs

    def stepping_request_ids(self) -> list[str]:
        """The requests the current step runs: what a failed step fails (waiting requests are not in it)."""
        return list(self._stepping)

    def warm_up(self, max_steps: int = 8) -> None:
        """One real generation before serving (a two-token prefill, then a decode step): a model or device that
        cannot generate raises here, before anything reports ready."""
        self.add_request(
            GenerationRequest(
                "warm-up",
                [self.pad_token_id] * 2,
                SamplingParams(temperature=0.0),
                StoppingParams(max_tokens=2, ignore_eos=True),
                arrival_time=time.monotonic(),  # not 0: --max-queue-wait-s would expire it before it ran
            )
        )
        for _ in range(max_steps):
            if not self.has_work:
                break
            self.step()
            for _, error in self.take_failures():
                raise error
        if self.has_work or "warm-up" in self._requests:
            self.abort_request("warm-up")
            raise EngineInternalError(f"warm-up generation did not finish in {max_steps} steps")

    def load(self) -> ServerLoad:
        """A snapshot for other threads: the async front publishes it, they never read the core's fields."""
        running = self.scheduler.running.values()
        kv = self.runner.kv
        return ServerLoad(
            running_sequences=len(running),
            waiting_requests=len({s.request.request_id for s in self.scheduler.waiting}),
            kv_tokens_used=sum(s.num_cached for s in running),
            kv_tokens_total=kv.budget_tokens,
            max_running_sequences=kv.layout.num_slots,
            prefix_cache_hit_tokens=self.prefix_cache.hit_tokens,
            preemptions=self.scheduler.num_preemptions,
            draft_tokens=self.draft_tokens,
            accepted_draft_tokens=self.accepted_tokens,
            has_work=self.has_work,
            published_at=time.monotonic(),
        )

    def take_failures(self) -> list[tuple[str, EngineError]]:
        """Requests that failed since the last call (already removed from the engine)."""
        failures, self._failures = self._failures, []
        return failures

    def _fail(self, request_id: str, error: EngineError) -> None:
        self.abort_request(request_id)
        self._failures.append((request_id, error))

    def step(self) -> list[ChoiceOutput]:
        """Expire, schedule, run the decode pass and the prefill chunks, sample, postprocess."""
        self._expire_waiting()
        drafts = self._plan_drafts()
        plan = self._schedule(sum(len(d) for d in drafts.values()))
        masks = self._start_masks(plan)
        ready: list[tuple[Sequence, Row]] = []  # sequences whose pending tokens all ran → sample
        rows = self._decode_rows(plan)
        verify = [(seq, drafts[seq.seq_id]) for _, seq in rows if seq.seq_id in drafts]
        if len(verify) < len(rows):  # a pass for the rows that do not verify a draft (when there are any)
            self._decode(plan, ready, skip={seq.seq_id for seq, _ in verify})
        for group in group_prefill(plan.prefill):
            self._prefill(group, ready)
        allowed = masks.result() if masks is not None else {}
        ready = [(seq, row) for seq, row in ready if self._has_mask(seq, allowed)]
        outputs = self._postprocess([seq for seq, _ in ready], self._sample(ready, allowed)) if ready else []
        for seq, draft in verify:
            outputs += self._verify(seq, draft)
        return outputs

    def _plan_drafts(self) -> dict[int, list[int]]:
        """seq_id → the tokens each decoding sequence drafts this step (speculative.py); none above max_batch."""
        config = self.speculative
        decoding = [s for s in self.scheduler.running.values() if s.num_pending == 1 and s.drafter is not None]
        if not config.enabled or len(self.scheduler.running) > config.max_batch:
            for seq in decoding:
                assert seq.drafter is not None
                seq.drafter.record(0, 0, 1, config)
            return {}
        drafts = {}
        for seq in decoding:
            assert seq.drafter is not None
            max_tokens = seq.request.stopping.max_tokens
            room = self.runner.slot_capacity - len(seq.token_ids) - 1
            left = room if max_tokens is None else min(room, max_tokens - seq.num_generated - 1)
            draft = seq.drafter.draft(seq.token_ids, min(config.max_draft, left))
            if draft:
                drafts[seq.seq_id] = draft
            else:
                seq.drafter.record(0, 0, 1, config)
        return drafts

    def _verify(self, seq: Sequence, draft: list[int]) -> list[ChoiceOutput]:
        """One pass over the sequence's last token and its draft, then the tokens the model accepts (and one more).

        The pass writes KV at every position; the positions of rejected tokens are simply left behind: the
        sequence's length (num_cached) says what is valid.
        """
        assert seq.slot is not None and seq.drafter is not None
        start = seq.num_cached  # the pending (last sampled) token's position
        ids = np.array([[seq.token_ids[start], *draft]], np.int64)
        rows = self.runner.forward(ids, np.array([start + 1 + len(draft)]), seq.slot, every_position=True)
        outputs, accepted = [], 0
        try:
            for i in range(len(draft) + 1):
                seq.num_cached = start + 1 + i  # the last token and the i drafted tokens accepted so far
                req = self._sample_request(seq)
                logits = resolve([rows[i]], [req])
                token, hit = choose(logits[0], req, draft[i] if i < len(draft) else None)
                outputs.append(self._advance(seq, with_logprobs(logits, np.array([token]), [req]), 0))
                accepted += hit
                if not hit or seq.is_finished:
                    break
        except Exception:
            logger.exception("verifying a draft of request %s failed", seq.request.request_id)
            self._fail(seq.request.request_id, EngineInternalError("internal error while generating"))
            return outputs
        self.draft_tokens += len(draft)
        self.accepted_tokens += accepted
        seq.drafter.record(len(draft), accepted, 0, self.speculative)
        return outputs

    def _start_masks(self, plan: ScheduleOutput) -> Future[dict[int, np.ndarray | str]] | None:
        """The allowed tokens of the constrained sequences that sample this step, computed on a worker thread while
        the passes run (llguidance and ONNX Runtime both release the GIL): seq_id → mask, or the matcher's error."""
        seqs = [seq for _, seq in self._decode_rows(plan) if seq.matcher is not None]
        seqs += [c.seq for c in plan.prefill if c.seq.matcher is not None and c.num_tokens == c.seq.num_pending]
        if not seqs:
            return None
        if self._mask_worker is None:
            self._mask_worker = ThreadPoolExecutor(1, thread_name_prefix="grammar-masks")

        def masks() -> dict[int, np.ndarray | str]:
            out: dict[int, np.ndarray | str] = {}
            for seq in seqs:
                assert seq.matcher is not None
                try:
                    out[seq.seq_id] = seq.matcher.allowed()
                except RuntimeError as e:
                    out[seq.seq_id] = str(e)
            return out

        return self._mask_worker.submit(masks)

    def _has_mask(self, seq: Sequence, allowed: dict[int, np.ndarray | str]) -> bool:
        """False (and the request failed) when a constrained sequence has no token it may choose."""
        if seq.matcher is None:
            return True
        mask = allowed.get(seq.seq_id)
        if isinstance(mask, np.ndarray) and mask.any():
            return True
        if isinstance(mask, str):  # the matcher hit one of its limits (a grammar too complex to follow)
            param = "tools" if seq.request.tool_calls else "constraint"
            self._fail(seq.request.request_id, InvalidRequestError(f"the output's grammar failed: {mask}", param=param))
        else:
            logger.error("request %s: its grammar allows no next token", seq.request.request_id)
            self._fail(seq.request.request_id, EngineInternalError("the output's grammar allows no next token"))
        return False

    def _expire_waiting(self) -> None:
        for seq in self.scheduler.expire_waiting(time.monotonic()):
            limit = self.scheduler.config.max_queue_wait_s
            self._fail(seq.request.request_id, QueueTimeoutError(f"no capacity within {limit:g} s; retry later"))

    def _schedule(self, draft_tokens: int = 0) -> ScheduleOutput:
        self._stepping = [s.request.request_id for s in self.scheduler.running.values()]  # until the plan is known
        plan = self.scheduler.schedule(draft_tokens)
        in_step = [seq for _, seq in self._decode_rows(plan)] + [chunk.seq for chunk in plan.prefill]
        self._stepping = list(dict.fromkeys(seq.request.request_id for seq in in_step))
        return plan

    def _decode_rows(self, plan: ScheduleOutput) -> list[tuple[int, Sequence]]:
        return [(slot, seq) for slot, seq in self.scheduler.running.items() if plan.decodes(slot)]

    def _prepare_decode(self, plan: ScheduleOutput, rows: list[tuple[int, Sequence]]) -> tuple[np.ndarray, np.ndarray]:
        """ids [rows of the range, 1]: each row's next pending token; free slots get a dummy token at position 0."""
        width = plan.decode_span - plan.decode_start
        ids = np.full((width, 1), self.pad_token_id, np.int64)
        lengths = np.ones(width, np.int64)
        for slot, seq in rows:
            ids[slot - plan.decode_start, 0] = seq.token_ids[seq.num_cached]
            lengths[slot - plan.decode_start] = seq.num_cached + 1
        return ids, lengths

    def _decode(self, plan: ScheduleOutput, ready: list[tuple[Sequence, Row]], skip: set[int] | None = None) -> None:
        """One forward pass over slots [decode_start, span), one token per sequence. Sequences in `skip` verify a
        draft in a pass of their own: here their row writes the same KV its own pass writes again, unsampled."""
        rows = self._decode_rows(plan)
        ids, lengths = self._prepare_decode(plan, rows)
        logits = self.runner.forward(ids, lengths, plan.decode_start)  # [span - start, V]
        for slot, seq in rows:
            if skip and seq.seq_id in skip:
                continue
            seq.num_cached += 1
            if seq.num_pending == 0:
                self._ready_to_sample(seq, logits[slot - plan.decode_start], ready)

    def _prepare_prefill(self, group: list[PrefillChunk]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """ids [group, longest chunk], right-padded; lengths: cached + chunk; last: each row's last real column."""
        width = max(c.num_tokens for c in group)
        ids = np.full((len(group), width), self.pad_token_id, np.int64)
        lengths = np.empty(len(group), np.int64)
        last = np.empty(len(group), np.int64)
        for row, chunk in enumerate(group):
            seq, start = chunk.seq, chunk.seq.num_cached
            assert start + chunk.num_tokens <= len(seq.token_ids)
            ids[row, : chunk.num_tokens] = seq.token_ids[start : start + chunk.num_tokens]
            lengths[row] = start + chunk.num_tokens
            last[row] = chunk.num_tokens - 1
        return ids, lengths, last

    def _prefill(self, group: list[PrefillChunk], ready: list[tuple[Sequence, Row]]) -> None:
        """One forward pass over the group's consecutive slots."""
        first_slot = group[0].seq.slot
        assert first_slot is not None
        ids, lengths, last = self._prepare_prefill(group)
        logits = self.runner.forward(ids, lengths, first_slot, last)
        for row, chunk in enumerate(group):
            chunk.seq.num_cached += chunk.num_tokens
            if chunk.seq.num_pending == 0:
                self._ready_to_sample(chunk.seq, logits[row], ready)

    def _restore_prefix(self, seq: Sequence) -> None:
        assert seq.slot is not None
        seq.num_cached = self.prefix_cache.restore(seq.token_ids[: seq.num_prompt_tokens], seq.slot)

    def _ready_to_sample(self, seq: Sequence, logits: Row, ready: list[tuple[Sequence, Row]]) -> None:
        """All pending tokens ran, so the sequence samples; a prompt that just completed goes to the prefix cache."""
        if seq.num_generated == 0 and seq.slot is not None:
            self.prefix_cache.store(seq.token_ids, seq.slot)
        ready.append((seq, logits))

    def _sample(self, ready: list[tuple[Sequence, Row]], allowed: dict[int, np.ndarray | str]) -> SampleResult:
        """One token per ready sequence (row i of the result is ready[i])."""
        requests = [self._sample_request(seq, allowed.get(seq.seq_id)) for seq, _ in ready]
        return sample(resolve([row for _, row in ready], requests), requests)

    def _sample_request(self, seq: Sequence, allowed: np.ndarray | str | None = None) -> SampleRequest:
        out = seq.request.output
        penalized = seq.request.sampling.repetition_penalty != 1.0
        return SampleRequest(
            params=seq.request.sampling,
            generator=seq.generator,
            output_counts=seq.output_counts,
            seen_tokens=np.asarray(seq.token_ids, np.int64) if penalized else np.empty(0, np.int64),
            num_logprobs=out.top_logprobs if out.logprobs else -1,
            allowed=allowed if isinstance(allowed, np.ndarray) else None,
        )

    def _postprocess(self, seqs: list[Sequence], result: SampleResult) -> list[ChoiceOutput]:
        """Append each sampled token, check for a stop, report; a failure fails only its own request."""
        outputs = []
        for i, seq in enumerate(seqs):
            if seq.is_finished:  # a sibling choice failed earlier in this loop
                continue
            try:
                outputs.append(self._advance(seq, result, i))
            except Exception:
                logger.exception("postprocessing request %s failed", seq.request.request_id)
                self._fail(seq.request.request_id, EngineInternalError("internal error while generating"))
        return outputs

    def _advance(self, seq: Sequence, result: SampleResult, row: int) -> ChoiceOutput:
        """Append the sampled token: a chunk of text while generating, the completion once a stop is hit."""
        if self.fault_hook is not None:
            self.fault_hook(seq)
        token = int(result.token_ids[row])
        now = time.monotonic()
        seq.first_token_time = seq.first_token_time or now
        seq.token_ids.append(token)
        seq.output_counts[token] = seq.output_counts.get(token, 0) + 1
        if seq.matcher is not None:
            seq.matcher.consume(token)
        text, matched = self._check_stop(seq, token)
        calls: tuple[ToolCallDelta, ...] = ()
        if seq.tool_parser is not None:
            text, deltas = seq.tool_parser.push(text)
            calls = tuple(deltas)
            if seq.finish_reason is not None:
                text += seq.tool_parser.flush()
                if seq.finish_reason is FinishReason.EOS and seq.tool_parser.calls:
                    seq.finish_reason = FinishReason.TOOL_CALLS
        logprobs: tuple[TokenLogprob, ...] = ()
        if result.logprobs is not None and seq.request.output.logprobs:
            logprobs = (self._logprob(token, result.logprobs[row], result.top_ids[row], result.top_logprobs[row]),)
        chunk = ChoiceOutput(seq.request.request_id, seq.index, text, (token,), logprobs, tool_calls=calls)
        if seq.finish_reason is None:
            return chunk
        return self._finish(seq, chunk, matched, now)

    def _check_stop(self, seq: Sequence, token: int) -> tuple[str, str]:
        """Set `seq.finish_reason` when `token` ends the choice; returns (text to send, matched stop)."""
        stopping = seq.request.stopping
        text, matched = "", ""
        if token in self.eos_token_ids and not stopping.ignore_eos:
            seq.finish_reason = FinishReason.EOS
        elif token in stopping.stop_token_ids:
            seq.finish_reason = FinishReason.STOP_TOKEN
            matched = self.tokenizer.decode([token], skip_special_tokens=False)
        else:
            text, stop = seq.stop_matcher.push(seq.detokenizer.step([token]))
            if stop is not None:
                seq.finish_reason, matched = FinishReason.STOP_SEQUENCE, stop
        if seq.finish_reason is None and seq.matcher is not None and seq.matcher.stopped:
            seq.finish_reason = FinishReason.EOS  # the grammar is complete: EOS is the only token it allows next
        if seq.finish_reason is None:
            if stopping.max_tokens is not None and seq.num_generated >= stopping.max_tokens:
                seq.finish_reason = FinishReason.MAX_TOKENS
            elif len(seq.token_ids) >= self.runner.slot_capacity:
                seq.finish_reason = FinishReason.CONTEXT_LENGTH
        if seq.finish_reason not in (None, FinishReason.STOP_SEQUENCE):
            # held-back text is released, unless it completes a stop string after all
            tail, stop = seq.stop_matcher.push(seq.detokenizer.flush())
            if stop is not None:
                seq.finish_reason, matched = FinishReason.STOP_SEQUENCE, stop
            text += tail if stop is not None else tail + seq.stop_matcher.flush()
        return text, matched

    def _finish(self, seq: Sequence, last: ChoiceOutput, matched: str, now: float) -> ChoiceOutput:
        """Free the finished choice's slot and complete its last output with usage and timing."""
        self.scheduler.finish(seq)
        self._forget_if_done(seq)
        req = seq.request
        assert seq.first_token_time is not None
        return replace(
            last,
            finish_reason=seq.finish_reason,
            matched_stop=matched,
            prompt_tokens=seq.num_prompt_tokens,
            completion_tokens=seq.num_generated,
            timing=Timing(
                queue_seconds=(seq.scheduled_time or now) - req.arrival_time,
                time_to_first_token_seconds=seq.first_token_time - req.arrival_time,
                total_seconds=now - req.arrival_time,
            ),
        )

    def _forget_if_done(self, seq: Sequence) -> None:
        seqs = self._requests.get(seq.request.request_id)
        if seqs is not None and all(s.status is SequenceStatus.FINISHED for s in seqs):
            del self._requests[seq.request.request_id]

    def _logprob(self, token_id: int, logprob: float, top_ids: np.ndarray, top_lps: np.ndarray) -> TokenLogprob:
        def entry(t: int, lp: float) -> TopLogprob:
            raw = self.tokenizer.token_bytes(t)
            return TopLogprob(t, raw.decode("utf-8", errors="replace"), lp, raw)

        chosen = entry(token_id, float(logprob))
        top = tuple(entry(int(t), float(lp)) for t, lp in zip(top_ids, top_lps, strict=True))
        return TokenLogprob(chosen.token_id, chosen.token, chosen.logprob, chosen.bytes, top)
