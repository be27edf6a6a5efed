"""Speculative decoding by prompt lookup: drafts from the sequence's own tokens, verified in one pass, exactly.

A sequence whose last `ngram` tokens occurred earlier in its prompt or output drafts the tokens that followed that
(latest) occurrence. The engine runs its last token and the draft as one row and gets logits for every position;
`choose` then keeps each drafted token only where the model would have produced it:
- greedy rows accept the longest draft prefix equal to the model's own choices, then add the model's next token;
- sampled rows use the speculative-sampling rule for a deterministic draft: accept a drafted token with probability
  p(token) under the row's sampling distribution, else sample from p without that token (renormalised). The output
  distribution is the model's; a seeded request repeats itself.

A sequence that drafts but keeps being rejected backs off: drafting pays only above an acceptance the cost of a
verification row buys back (SpeculativeConfig.min_accepted).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from inference_service.engine.sampler import SampleRequest, draw, filter_candidates, process


@dataclass(slots=True, frozen=True)
class SpeculativeConfig:
    method: str = "ngram"  # ngram | none
    ngram: int = 3  # tokens matched
    max_draft: int = 8  # tokens drafted per step at most
    max_batch: int = 2  # sequences draft only while at most this many are running
    # a sequence's moving average of accepted tokens per verification below this pauses its drafting for
    # `backoff` tokens: a verification pass costs about two one-token passes, so it pays from one accepted token
    min_accepted: float = 1.0
    backoff: int = 16

    @property
    def enabled(self) -> bool:
        return self.method == "ngram" and self.max_draft > 0


@dataclass(slots=True)
class Drafter:
    """One sequence's n-gram index over its tokens: n-gram → where its latest occurrence's next token is."""

    ngram: int
    _index: dict[tuple[int, ...], int] = field(default_factory=dict)
    _indexed: int = 0  # positions [0, _indexed) have had their following n-gram entered
    accepted_avg: float = 2.0  # moving average of accepted tokens per verification (starts optimistic)
    paused: int = 0  # tokens left before drafting again

    def draft(self, tokens: list[int], limit: int) -> list[int]:
        """Up to `limit` tokens that followed the latest earlier occurrence of the last `ngram` tokens; [] if none."""
        n = self.ngram
        # enter every n-gram that has a following token: tokens[i:i+n] → i+n, for i + n < len(tokens)
        for i in range(self._indexed, len(tokens) - n):
            self._index[tuple(tokens[i : i + n])] = i + n
        self._indexed = max(self._indexed, len(tokens) - n)
        if self.paused > 0 or limit <= 0 or len(tokens) <= n:
            return []
        start = self._index.get(tuple(tokens[-n:]))
        return [] if start is None else tokens[start : start + limit]

    def record(self, drafted: int, accepted: int, emitted: int, config: SpeculativeConfig) -> None:
        """After a step: a verification's outcome, or `emitted` tokens produced while paused."""
        if drafted:
            self.accepted_avg = 0.7 * self.accepted_avg + 0.3 * accepted
            if self.accepted_avg < config.min_accepted:
                self.paused, self.accepted_avg = config.backoff, 2.0  # retry later, optimistic again
        else:
            self.paused = max(0, self.paused - emitted)


def choose(logits: np.ndarray, req: SampleRequest, draft: int | None) -> tuple[int, bool]:
    """The token a verified position emits, and whether it is the drafted one (accepted).

    `logits`: the position's row [V] (exact where the sampler can look, as lm_head.resolve gives it); `draft`: the
    drafted token at this position, or None past the draft (then this is plain sampling).
    """
    row = process(logits, req)
    if req.params.greedy:
        token = int(row.argmax())
        return token, token == draft
    ids, probs = filter_candidates(row, req.params)
    if draft is not None:
        hit = np.flatnonzero(ids == draft)
        p_draft = float(probs[hit[0]]) if hit.shape[0] else 0.0
        if req.generator.random() < p_draft:
            return draft, True
        if hit.shape[0]:
            probs = probs.copy()
            probs[hit[0]] = 0.0
        if probs.sum() <= 0.0:  # p(draft) was 1 up to rounding: nothing else to draw
            return draft, True
    return draw(ids, probs, req.generator), False
