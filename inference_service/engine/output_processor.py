"""A step's sampled tokens become outputs: advance each sequence, apply the stop rules, finish tool calls, time
and free finished choices, write logprob entries; failed and aborted requests are taken out here too."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from inference_service.engine.errors import EngineError, EngineInternalError
from inference_service.engine.sampler import SampleResult
from inference_service.engine.scheduler import Scheduler
from inference_service.engine.sequence import Sequence, SequenceStatus
from inference_service.engine.tokenizer import Tokenizer
from inference_service.engine.types import (
    ChoiceOutput,
    Failure,
    FinishReason,
    StepResult,
    Timing,
    TokenLogprob,
    ToolCallDelta,
    TopLogprob,
)

logger = logging.getLogger(__name__)


class OutputProcessor:
    def __init__(
        self,
        tokenizer: Tokenizer,
        eos_token_ids: frozenset[int],
        slot_capacity: int,
        scheduler: Scheduler,
        requests: dict[str, list[Sequence]],
    ) -> None:
        self.tokenizer = tokenizer
        self.eos_token_ids = eos_token_ids
        self.slot_capacity = slot_capacity
        self.scheduler = scheduler
        self.requests = requests  # the core's live requests: request_id → its choices; finished ones are removed
        self.fault_hook: Callable[[Sequence], None] | None = None  # tests inject step failures through it

    def postprocess(self, seqs: list[Sequence], result: SampleResult, step: StepResult) -> None:
        """Append each sampled token (row i of `result` is seqs[i]); a failure fails only its own request."""
        for i, seq in enumerate(seqs):
            if seq.is_finished:  # a sibling choice failed earlier in this loop
                continue
            try:
                step.outputs.append(self.advance(seq, result, i))
            except Exception:
                logger.exception("postprocessing request %s failed", seq.request.request_id)
                step.failures.append(self.fail(seq.request.request_id))

    def abort(self, request_id: str) -> list[ChoiceOutput]:
        """Finish the request's unfinished choices as CANCELLED, freeing their slots."""
        outputs = []
        for seq in self.requests.pop(request_id, ()):
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

    def fail(self, request_id: str, error: EngineError | None = None) -> Failure:
        """Take the request out of the engine; what to report (an internal error unless `error` says otherwise)."""
        self.abort(request_id)
        return Failure(request_id, error or EngineInternalError("internal error while generating"))

    def advance(self, seq: Sequence, result: SampleResult, row: int) -> ChoiceOutput:
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
            elif len(seq.token_ids) >= self.slot_capacity:
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
        seqs = self.requests.get(seq.request.request_id)
        if seqs is not None and all(s.status is SequenceStatus.FINISHED for s in seqs):
            del self.requests[seq.request.request_id]
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

    def _logprob(self, token_id: int, logprob: float, top_ids: np.ndarray, top_lps: np.ndarray) -> TokenLogprob:
        def entry(t: int, lp: float) -> TopLogprob:
            raw = self.tokenizer.token_bytes(t)
            return TopLogprob(t, raw.decode("utf-8", errors="replace"), lp, raw)

        chosen = entry(token_id, float(logprob))
        top = tuple(entry(int(t), float(lp)) for t, lp in zip(top_ids, top_lps, strict=True))
        return TokenLogprob(chosen.token_id, chosen.token, chosen.logprob, chosen.bytes, top)
