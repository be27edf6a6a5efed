"""Engine core: add requests, step, report. Runs on the engine thread only; knows nothing of asyncio or gRPC.

A step is schedule → run the passes → process the outputs:
- scheduler.py picks the decode rows and prefill chunks (restoring cached prompt prefixes on admission);
- speculator.py plans drafts before and verifies them after; grammar_masks.py computes masks during the passes;
- batch.py builds each pass's inputs, runner.py runs it, sampler.py picks the tokens;
- output_processor.py turns tokens into outputs (stops, tool calls, timing, logprobs) and takes failed requests out.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import numpy as np

from inference_service.engine.batch import decode_rows, prepare_decode, prepare_prefill, sample_request
from inference_service.engine.detokenizer import IncrementalDetokenizer, StopMatcher
from inference_service.engine.errors import QueueTimeoutError
from inference_service.engine.grammar_masks import MaskWorker, mask_error
from inference_service.engine.lm_head import Row, resolve
from inference_service.engine.output_processor import OutputProcessor
from inference_service.engine.prefix_cache import PrefixCache, PrefixCacheConfig
from inference_service.engine.runner import Runner
from inference_service.engine.sampler import sample
from inference_service.engine.scheduler import PrefillChunk, ScheduleOutput, Scheduler, SchedulerConfig, group_prefill
from inference_service.engine.sequence import Sequence
from inference_service.engine.speculative import SpeculativeConfig
from inference_service.engine.speculator import Speculator
from inference_service.engine.tokenizer import Tokenizer
from inference_service.engine.tool_calls import ToolCallParser
from inference_service.engine.types import ChoiceOutput, GenerationRequest, ServerLoad, StepResult


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
        self.tokenizer = tokenizer
        self.pad_token_id = pad_token_id
        self.prefix_cache = PrefixCache(prefix_cache or PrefixCacheConfig(max_entries=0), runner.kv)
        self.scheduler = Scheduler(config, runner.kv, self.prefix_cache)
        self._requests: dict[str, list[Sequence]] = {}
        eos = frozenset(eos_token_ids)
        self.processor = OutputProcessor(tokenizer, eos, runner.slot_capacity, self.scheduler, self._requests)
        self.speculator = Speculator(speculative or SpeculativeConfig(method="none"), runner, self.processor)
        self._masks = MaskWorker()
        self._seq_ids = itertools.count()
        self._stepping: list[str] = []  # requests with a sequence in the current (or last) step

    @property
    def has_work(self) -> bool:
        return self.scheduler.has_work

    @property
    def slot_capacity(self) -> int:
        """Tokens one sequence may hold (prompt + output)."""
        return self.runner.slot_capacity

    @property
    def max_running_sequences(self) -> int:
        return self.runner.kv.layout.num_slots

    @property
    def fault_hook(self) -> Callable[[Sequence], None] | None:
        """Called before each sampled token is appended: tests inject step failures through it."""
        return self.processor.fault_hook

    @fault_hook.setter
    def fault_hook(self, hook: Callable[[Sequence], None] | None) -> None:
        self.processor.fault_hook = hook

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
                    drafter=self.speculator.drafter(request),
                )
            )
        self._requests[request.request_id] = seqs
        for seq in seqs:
            self.scheduler.add(seq)

    def abort_request(self, request_id: str) -> list[ChoiceOutput]:
        """Finish the request's unfinished choices as CANCELLED, freeing their slots."""
        return self.processor.abort(request_id)

    def load(self) -> ServerLoad:
        """A snapshot for other threads: the async front publishes it, they never read the core's fields."""
        running = self.scheduler.running.values()
        return ServerLoad(
            running_sequences=len(running),
            waiting_requests=len({s.request.request_id for s in self.scheduler.waiting}),
            kv_tokens_used=sum(s.num_cached for s in running),
            kv_tokens_total=self.runner.kv.budget_tokens,
            max_running_sequences=self.max_running_sequences,
            prefix_cache_hit_tokens=self.prefix_cache.hit_tokens,
            preemptions=self.scheduler.num_preemptions,
            draft_tokens=self.speculator.draft_tokens,
            accepted_draft_tokens=self.speculator.accepted_tokens,
            has_work=self.has_work,
            published_at=time.monotonic(),
        )

    def step(self) -> StepResult:
        """Schedule, run, process the outputs. Failures come back in the result, never raised: an exception in the
        passes fails the requests in this step (waiting requests are not in it) and the engine serves on."""
        result = StepResult([], [])
        for seq in self.scheduler.expire_waiting(time.monotonic()):
            limit = self.scheduler.config.max_queue_wait_s
            error = QueueTimeoutError(f"no capacity within {limit:g} s; retry later")
            result.failures.append(self.processor.fail(seq.request.request_id, error))
        try:
            self._step(result)
        except Exception as e:
            result.outputs, result.error = [], e
            for request_id in self._stepping:
                result.failures.append(self.processor.fail(request_id))
        return result

    def _step(self, result: StepResult) -> None:
        drafts = self.speculator.plan(self.scheduler.running)
        self._stepping = [s.request.request_id for s in self.scheduler.running.values()]  # until the plan is known
        plan = self.scheduler.schedule(sum(len(d) for d in drafts.values()))
        rows = decode_rows(plan, self.scheduler.running)
        in_step = [seq for _, seq in rows] + [chunk.seq for chunk in plan.prefill]
        self._stepping = list(dict.fromkeys(seq.request.request_id for seq in in_step))
        masks = self._masks.start(rows, plan.prefill)
        ready: list[tuple[Sequence, Row]] = []  # sequences whose pending tokens all ran → sample
        verify = [(seq, drafts[seq.seq_id]) for _, seq in rows if seq.seq_id in drafts]
        if len(verify) < len(rows):  # a pass for the rows that do not verify a draft (when there are any)
            self._decode(plan, rows, ready, skip={seq.seq_id for seq, _ in verify})
        for group in group_prefill(plan.prefill):
            self._prefill(group, ready)
        allowed = masks.result() if masks is not None else {}
        sampling = []
        for seq, row in ready:
            error = mask_error(seq, allowed)
            if error is None:
                sampling.append((seq, row))
            else:  # a constrained sequence with no token it may choose
                result.failures.append(self.processor.fail(seq.request.request_id, error))
        if sampling:
            requests = [sample_request(seq, allowed.get(seq.seq_id)) for seq, _ in sampling]
            tokens = sample(resolve([row for _, row in sampling], requests), requests)
            self.processor.postprocess([seq for seq, _ in sampling], tokens, result)
        for seq, draft in verify:
            self.speculator.verify(seq, draft, result)

    def _decode(
        self, plan: ScheduleOutput, rows: list[tuple[int, Sequence]], ready: list[tuple[Sequence, Row]], skip: set[int]
    ) -> None:
        """One forward pass over slots [decode_start, span), one token per sequence. Sequences in `skip` verify a
        draft in a pass of their own: here their row writes the same KV its own pass writes again, unsampled."""
        ids, lengths = prepare_decode(plan, rows, self.pad_token_id)
        logits = self.runner.forward(ids, lengths, plan.decode_start)  # [span - start, V]
        for slot, seq in rows:
            if seq.seq_id in skip:
                continue
            seq.num_cached += 1
            if seq.num_pending == 0:
                self._ready_to_sample(seq, logits[slot - plan.decode_start], ready)

    def _prefill(self, group: list[PrefillChunk], ready: list[tuple[Sequence, Row]]) -> None:
        """One forward pass over the group's consecutive slots."""
        first_slot = group[0].seq.slot
        assert first_slot is not None
        ids, lengths, last = prepare_prefill(group, self.pad_token_id)
        logits = self.runner.forward(ids, lengths, first_slot, last)
        for row, chunk in enumerate(group):
            chunk.seq.num_cached += chunk.num_tokens
            if chunk.seq.num_pending == 0:
                self._ready_to_sample(chunk.seq, logits[row], ready)

    def _ready_to_sample(self, seq: Sequence, logits: Row, ready: list[tuple[Sequence, Row]]) -> None:
        """All pending tokens ran, so the sequence samples; a prompt that just completed goes to the prefix cache."""
        if seq.num_generated == 0 and seq.slot is not None:
            self.prefix_cache.store(seq.token_ids, seq.slot)
        ready.append((seq, logits))
