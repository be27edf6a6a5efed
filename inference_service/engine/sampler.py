"""Token choice: pure functions over numpy arrays. logits: [batch, vocab] float32, one row per sequence."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inference_service.engine.types import SamplingParams


@dataclass(slots=True, frozen=True)
class SampleRequest:
    """What the sampler needs to know about one row."""

    params: SamplingParams
    generator: np.random.Generator
    output_counts: dict[int, int]  # generated token id → times (frequency/presence penalties)
    seen_tokens: np.ndarray  # int64 ids of prompt + output (repetition penalty)
    num_logprobs: int  # −1 = none, 0 = sampled token only, k = also the top k
    allowed: np.ndarray | None = None  # bool [vocab]: the tokens a constrained row may choose (engine/constraints.py)


@dataclass(slots=True, frozen=True)
class SampleResult:
    token_ids: np.ndarray  # int64 [batch]
    logprobs: np.ndarray | None  # float32 [batch]: log-probability of the chosen token
    top_ids: list[np.ndarray]  # per row int64 [k], most likely first
    top_logprobs: list[np.ndarray]  # per row float32 [k]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def is_processed(p: SamplingParams) -> bool:
    """Whether logit bias or a penalty changes this request's logits."""
    return bool(p.logit_bias) or p.repetition_penalty != 1.0 or bool(p.frequency_penalty or p.presence_penalty)


def apply_penalties(row: np.ndarray, req: SampleRequest) -> np.ndarray:
    """Logit bias and OpenAI/vLLM penalties on one row (a copy)."""
    p = req.params
    row = row.copy()
    for token_id, bias in p.logit_bias.items():
        if 0 <= token_id < row.shape[0]:
            row[token_id] += bias
    if p.repetition_penalty != 1.0 and req.seen_tokens.size:
        ids = np.unique(req.seen_tokens)
        vals = row[ids]
        row[ids] = np.where(vals > 0, vals / p.repetition_penalty, vals * p.repetition_penalty)
    if (p.frequency_penalty or p.presence_penalty) and req.output_counts:
        ids = np.fromiter(req.output_counts.keys(), np.int64)
        counts = np.fromiter(req.output_counts.values(), np.float32)
        row[ids] -= p.frequency_penalty * counts + p.presence_penalty
    return row


def _sorted_desc(scaled: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """`ids` most likely first; ties by id, as a stable sort of the whole row would order them."""
    return ids[np.lexsort((ids, -scaled[ids]))]


def _nucleus_pool(scaled: np.ndarray, weights: np.ndarray, mass: float) -> np.ndarray:
    """The fewest most-likely tokens (grown ×8 from 64) whose weights reach `mass`: a superset of the top-p prefix."""
    size = 64
    while size < scaled.shape[0]:
        pool = np.argpartition(-scaled, size - 1)[:size]
        if weights[pool].sum(dtype=np.float64) > mass * (1 + 1e-9):  # a margin over float64 summation order
            return pool
        size *= 8
    return np.arange(scaled.shape[0])


def filter_candidates(row: np.ndarray, p: SamplingParams) -> tuple[np.ndarray, np.ndarray]:
    """Temperature, top-k, top-p and min-p → (candidate ids, their probabilities).

    Truncated candidates come most likely first; with no truncation at all every token is a candidate, in id order.
    Sorting a whole 49,152-token row costs ~5 ms, so only what truncation needs is sorted: the top k, the tokens
    above the min-p threshold, or a pool of the most likely tokens that holds the top-p mass.
    """
    scaled = row / np.float32(p.temperature)
    vocab = scaled.shape[0]
    if 0 < p.top_k < vocab:
        ids = _sorted_desc(scaled, np.argpartition(-scaled, p.top_k - 1)[: p.top_k])
        weights = np.exp(scaled[ids] - scaled[ids[0]])
        probs = weights / weights.sum(dtype=np.float64)  # renormalized within the top k
    else:
        weights = np.exp(scaled - scaled.max())  # the most likely token weighs 1
        total = weights.sum(dtype=np.float64)  # float64: top_p's cumulative mass stays exact far into the tail
        if p.top_p >= 1.0 and p.min_p <= 0.0:
            return np.arange(vocab), weights / total
        # both cuts keep a prefix of the sorted row; a pool holding that prefix is all that needs sorting
        pools = []
        if p.min_p > 0.0:
            pools.append(np.flatnonzero(weights >= p.min_p))  # prob ≥ min_p · max prob
        if p.top_p < 1.0:
            pools.append(_nucleus_pool(scaled, weights, p.top_p * total))
        ids = _sorted_desc(scaled, min(pools, key=len))
        probs = weights[ids] / total
    keep = probs.shape[0]
    if p.top_p < 1.0:
        # smallest prefix whose mass reaches top_p (at least one token)
        keep = min(keep, int(np.searchsorted(np.cumsum(probs), p.top_p)) + 1)
    if p.min_p > 0.0:
        keep = min(keep, max(1, int((probs >= p.min_p * probs[0]).sum())))
    probs = probs[:keep] / probs[:keep].sum()
    return ids[:keep], probs


def process(row: np.ndarray, req: SampleRequest) -> np.ndarray:
    """What the choice is made from: logit bias and penalties, and −inf where a constrained row may not go (the row
    itself when nothing applies, else a copy)."""
    if is_processed(req.params):
        row = apply_penalties(row, req)
    if req.allowed is not None:
        row = np.where(req.allowed, row, -np.inf)
    return row


def draw(ids: np.ndarray, probs: np.ndarray, generator: np.random.Generator) -> int:
    """One of `ids` with probability ∝ `probs` (one uniform draw)."""
    pick = int(np.searchsorted(np.cumsum(probs), generator.random() * probs.sum(), side="right"))
    return int(ids[min(pick, ids.shape[0] - 1)])


def sample(logits: np.ndarray, requests: list[SampleRequest]) -> SampleResult:
    """One token per row. Logprobs are the model's own distribution's; the choice is made after logit bias,
    penalties and, for constrained rows, the mask (a disallowed token is never chosen)."""
    processed = logits  # a copy only when some row is penalized, biased or constrained
    for i, r in enumerate(requests):
        if is_processed(r.params) or r.allowed is not None:
            if processed is logits:
                processed = logits.copy()
            processed[i] = process(logits[i], r)
    chosen = processed.argmax(axis=-1).astype(np.int64)  # greedy rows: no softmax needed
    for i, r in enumerate(requests):
        if not r.params.greedy:
            chosen[i] = draw(*filter_candidates(processed[i], r.params), r.generator)
    return with_logprobs(logits, chosen, requests)


def with_logprobs(logits: np.ndarray, chosen: np.ndarray, requests: list[SampleRequest]) -> SampleResult:
    """The chosen tokens with the logprobs their requests ask for, from the model's own distribution."""
    batch = logits.shape[0]
    want = [i for i, r in enumerate(requests) if r.num_logprobs >= 0]
    if not want:
        return SampleResult(chosen, None, [], [])
    logprobs = np.zeros(batch, np.float32)
    top_ids: list[np.ndarray] = [np.empty(0, np.int64)] * batch
    top_lps: list[np.ndarray] = [np.empty(0, np.float32)] * batch
    for i in want:
        lp = log_softmax(logits[i].astype(np.float64))  # the model's distribution, before any processing
        logprobs[i] = lp[chosen[i]]
        k = requests[i].num_logprobs
        if k > 0:
            top = np.argpartition(-lp, k - 1)[:k]
            top = top[np.argsort(-lp[top], kind="stable")]
            top_ids[i], top_lps[i] = top.astype(np.int64), lp[top].astype(np.float32)
    return SampleResult(chosen, logprobs, top_ids, top_lps)
