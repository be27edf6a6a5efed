"""Exact logits from a screened head (models/screened_head.py): bounds on every logit, exact values where they matter.

A screened graph gives, per row, lower ≤ logit ≤ upper for every token and the final hidden state. A row that
samples among its k most likely tokens (greedy: k = 1) can only choose a token whose upper bound reaches the k-th
highest lower bound; penalties and logit bias move both bounds the same way (each is monotone in the logit), so
they are applied to the bounds first. Those candidates (median 2, p95 17 for greedy rows of the default model) get
their exact logit from the head's fp32 weights, every other token −inf: the sampler then picks exactly what it
would pick from the full row. Rows that need the whole distribution (logprobs, sampling without top-k) run the
fp32 head on their hidden state.

A constrained row (engine/constraints.py) chooses only among its allowed tokens: bounds of the others are −inf
before the k-th highest lower bound is taken, so no disallowed token is ever a candidate, also when fewer tokens
are allowed than k. When few tokens are allowed at all, their exact logits are all a row needs, whatever its
sampling: a gather of those rows of the head instead of the full head.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from inference_service.engine.sampler import SampleRequest, apply_penalties, is_processed
from inference_service.models.screened_head import HIDDEN

MAX_CANDIDATES = 4096  # beyond this, recomputing one by one costs more than the full head: use it
# a constrained top-k or greedy row with at most this many allowed tokens skips screening: the gather of their
# exact logits costs less than masking the bounds (bench/constrained.py)
FEW_ALLOWED = 64


class ExactHead:
    """The head's exact fp32 values: the full MatMul for whole rows, and a gather for a few candidates."""

    def __init__(self, session: ort.InferenceSession, weight: np.ndarray) -> None:
        self.session = session
        self.weight = weight  # [V, K], memory-mapped: only the rows of tokens ever recomputed become resident

    def full(self, hidden: np.ndarray) -> np.ndarray:
        """hidden [R, K] → logits [R, V]."""
        return self.session.run(None, {HIDDEN: np.ascontiguousarray(hidden, np.float32)})[0]

    def exact(self, hidden: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """hidden [K], ids [C] → logits [C]."""
        return self.weight[ids] @ hidden


@dataclass(slots=True, frozen=True)
class ScreenedRow:
    lower: np.ndarray  # [V]
    upper: np.ndarray  # [V]
    hidden: np.ndarray  # [K]
    head: ExactHead


@dataclass(slots=True, frozen=True)
class ScreenedRows:
    """One pass's screened outputs: lower/upper [B, V], hidden [B, K]."""

    lower: np.ndarray
    upper: np.ndarray
    hidden: np.ndarray
    head: ExactHead

    def __len__(self) -> int:
        return self.lower.shape[0]

    def __getitem__(self, row: int) -> ScreenedRow:
        return ScreenedRow(self.lower[row], self.upper[row], self.hidden[row], self.head)


Row = np.ndarray | ScreenedRow  # full logits [V], or a screened row


def _kth_largest(values: np.ndarray, k: int) -> float:
    if k == 1:
        return float(values.max())
    top = values.max()
    for gap in (8.0, 32.0):  # when ≥ k values lie within `gap` of the top, the k-th largest is among them
        near = values[values >= top - gap]
        if near.shape[0] >= k:
            return float(np.partition(near, near.shape[0] - k)[near.shape[0] - k])
    return float(np.partition(values, values.shape[0] - k)[values.shape[0] - k])


def candidates(row: ScreenedRow, req: SampleRequest) -> np.ndarray | None:
    """Every token the row's sampling could choose, or None when it needs the whole distribution."""
    p = req.params
    if req.num_logprobs >= 0:
        return None
    k = 1 if p.greedy else p.top_k
    whole = not 0 < k < row.lower.shape[0]  # sampling over the whole distribution
    allowed = None if req.allowed is None else np.flatnonzero(req.allowed)
    if allowed is not None and allowed.shape[0] <= (MAX_CANDIDATES if whole else FEW_ALLOWED):
        return allowed  # the exact logits of every token the row may choose: exact for any sampling
    if whole:
        return None
    lower, upper = row.lower, row.upper
    if is_processed(p):
        lower, upper = apply_penalties(lower, req), apply_penalties(upper, req)
    if allowed is not None:
        lower, upper = _only(lower, allowed), _only(upper, allowed)
        k = min(k, allowed.shape[0])
    ids = np.flatnonzero(upper >= _kth_largest(lower, k))
    return ids if 0 < ids.shape[0] <= MAX_CANDIDATES else None  # none: non-finite bounds, let the full head say


def _only(values: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """`values` at `ids`, −inf elsewhere."""
    out = np.full_like(values, -np.inf)
    out[ids] = values[ids]
    return out


def resolve(rows: list[Row], requests: list[SampleRequest]) -> np.ndarray:
    """[R, V] logits that sample exactly like the full head: full rows, or exact candidates and −inf elsewhere."""
    vocab = rows[0].lower.shape[0] if isinstance(rows[0], ScreenedRow) else rows[0].shape[0]
    logits = np.empty((len(rows), vocab), np.float32)
    full: list[int] = []
    for i, (row, req) in enumerate(zip(rows, requests, strict=True)):
        if not isinstance(row, ScreenedRow):
            logits[i] = row
            continue
        ids = candidates(row, req)
        if ids is None:
            full.append(i)
            continue
        logits[i] = -np.inf
        logits[i, ids] = row.head.exact(row.hidden, ids)
    if full:
        head = rows[full[0]].head  # type: ignore[union-attr]  # one model per engine: one head
        logits[full] = head.full(np.stack([rows[i].hidden for i in full]))  # type: ignore[union-attr]
    return logits


def full_logits(out: np.ndarray | ScreenedRows) -> np.ndarray:
    """A pass's whole logit rows [B, V], whichever head it ran."""
    return out if isinstance(out, np.ndarray) else out.head.full(out.hidden)
