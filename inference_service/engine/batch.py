"""Input building for one step's passes: pure functions from the plan and its sequences to arrays."""

from __future__ import annotations

import numpy as np

from inference_service.engine.sampler import SampleRequest
from inference_service.engine.scheduler import PrefillChunk, ScheduleOutput
from inference_service.engine.sequence import Sequence


def decode_rows(plan: ScheduleOutput, running: dict[int, Sequence]) -> list[tuple[int, Sequence]]:
    """(slot, sequence) of every running sequence inside the plan's decode pass."""
    return [(slot, seq) for slot, seq in running.items() if plan.decodes(slot)]


def prepare_decode(
    plan: ScheduleOutput, rows: list[tuple[int, Sequence]], pad_token_id: int
) -> tuple[np.ndarray, np.ndarray]:
    """ids [rows of the range, 1]: each row's next pending token; free slots get a dummy token at position 0."""
    width = plan.decode_span - plan.decode_start
    ids = np.full((width, 1), pad_token_id, np.int64)
    lengths = np.ones(width, np.int64)
    for slot, seq in rows:
        ids[slot - plan.decode_start, 0] = seq.token_ids[seq.num_cached]
        lengths[slot - plan.decode_start] = seq.num_cached + 1
    return ids, lengths


def prepare_prefill(group: list[PrefillChunk], pad_token_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ids [group, longest chunk], right-padded; lengths: cached + chunk; last: each row's last real column."""
    width = max(c.num_tokens for c in group)
    ids = np.full((len(group), width), pad_token_id, np.int64)
    lengths = np.empty(len(group), np.int64)
    last = np.empty(len(group), np.int64)
    for row, chunk in enumerate(group):
        seq, start = chunk.seq, chunk.seq.num_cached
        assert start + chunk.num_tokens <= len(seq.token_ids)
        ids[row, : chunk.num_tokens] = seq.token_ids[start : start + chunk.num_tokens]
        lengths[row] = start + chunk.num_tokens
        last[row] = chunk.num_tokens - 1
    return ids, lengths, last


def sample_request(seq: Sequence, allowed: np.ndarray | str | None = None) -> SampleRequest:
    """What the sampler needs of a sequence; `allowed`: its grammar's mask (a str is a matcher error: no mask)."""
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
