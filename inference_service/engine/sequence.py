"""One choice of one request as it moves through the engine."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

from inference_service.engine.detokenizer import IncrementalDetokenizer, StopMatcher
from inference_service.engine.speculative import Drafter
from inference_service.engine.tool_calls import ToolCallParser
from inference_service.engine.types import FinishReason, GenerationRequest, GrammarMatcher


class SequenceStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(slots=True, eq=False)
class Sequence:
    seq_id: int
    request: GenerationRequest
    index: int  # choice index within the request
    token_ids: list[int]  # prompt + generated
    num_prompt_tokens: int
    detokenizer: IncrementalDetokenizer
    stop_matcher: StopMatcher
    generator: np.random.Generator
    status: SequenceStatus = SequenceStatus.WAITING
    slot: int | None = None
    num_cached: int = 0  # leading tokens whose KV is in the slot
    output_counts: dict[int, int] = field(default_factory=dict)
    finish_reason: FinishReason | None = None
    scheduled_time: float | None = None
    first_token_time: float | None = None
    matcher: GrammarMatcher | None = None  # constrained decoding: advanced by every sampled token
    tool_parser: ToolCallParser | None = None  # chat with callable tools: splits text and calls
    drafter: Drafter | None = None  # speculative decoding by prompt lookup

    @property
    def num_pending(self) -> int:
        """Tokens not yet run through the model (the prompt tail, or the last sampled token)."""
        return len(self.token_ids) - self.num_cached

    @property
    def num_generated(self) -> int:
        return len(self.token_ids) - self.num_prompt_tokens

    @property
    def is_finished(self) -> bool:
        return self.status is SequenceStatus.FINISHED
