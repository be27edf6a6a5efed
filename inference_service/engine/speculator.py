"""Speculative decoding in the step: which decoding sequences draft (`plan`), and one pass per draft that emits the
tokens the model accepts (`verify`). Drafting and the acceptance rule themselves are engine/speculative.py."""

from __future__ import annotations

import logging

import numpy as np

from inference_service.engine.batch import sample_request
from inference_service.engine.lm_head import resolve
from inference_service.engine.output_processor import OutputProcessor
from inference_service.engine.runner import Runner
from inference_service.engine.sampler import with_logprobs
from inference_service.engine.sequence import Sequence
from inference_service.engine.speculative import Drafter, SpeculativeConfig, choose
from inference_service.engine.types import GenerationRequest, StepResult

logger = logging.getLogger(__name__)


class Speculator:
    def __init__(self, config: SpeculativeConfig, runner: Runner, processor: OutputProcessor) -> None:
        self.config = config
        self.runner = runner
        self.processor = processor
        self.draft_tokens = 0  # drafted tokens verified since start
        self.accepted_tokens = 0  # of them, accepted

    def drafter(self, request: GenerationRequest) -> Drafter | None:
        """A new choice's drafter; constrained sequences do not draft: their masks depend on every accepted token."""
        return Drafter(self.config.ngram) if self.config.enabled and request.grammar is None else None

    def plan(self, running: dict[int, Sequence]) -> dict[int, list[int]]:
        """seq_id → the tokens each decoding sequence drafts this step; none above max_batch."""
        config = self.config
        decoding = [s for s in running.values() if s.num_pending == 1 and s.drafter is not None]
        if not config.enabled or len(running) > config.max_batch:
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

    def verify(self, seq: Sequence, draft: list[int], step: StepResult) -> None:
        """One pass over the sequence's last token and its draft, then the tokens the model accepts (and one more).
        A failure after the pass fails only this request; the tokens emitted before it stay in `step`.

        The pass writes KV at every position; the positions of rejected tokens are simply left behind: the
        sequence's length (num_cached) says what is valid.
        """
        assert seq.slot is not None and seq.drafter is not None
        start = seq.num_cached  # the pending (last sampled) token's position
        ids = np.array([[seq.token_ids[start], *draft]], np.int64)
        rows = self.runner.forward(ids, np.array([start + 1 + len(draft)]), seq.slot, every_position=True)
        accepted = 0
        try:
            for i in range(len(draft) + 1):
                seq.num_cached = start + 1 + i  # the last token and the i drafted tokens accepted so far
                req = sample_request(seq)
                logits = resolve([rows[i]], [req])
                token, hit = choose(logits[0], req, draft[i] if i < len(draft) else None)
                step.outputs.append(self.processor.advance(seq, with_logprobs(logits, np.array([token]), [req]), 0))
                accepted += hit
                if not hit or seq.is_finished:
                    break
        except Exception:
            logger.exception("verifying a draft of request %s failed", seq.request.request_id)
            step.failures.append(self.processor.fail(seq.request.request_id))
            return
        self.draft_tokens += len(draft)
        self.accepted_tokens += accepted
        seq.drafter.record(len(draft), accepted, 0, self.config)
