"""Pure statistics over per-request measurements: percentiles and one scenario's summary."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(slots=True)
class RequestResult:
    """One streamed request as the client saw it (times in seconds from `time.perf_counter`)."""

    start: float
    end: float
    first_token: float | None = None  # arrival of the first non-empty content chunk
    chunk_times: list[float] = field(default_factory=list)  # arrival of every non-empty content chunk
    prompt_tokens: int = 0
    output_tokens: int = 0  # from the server's usage when it sends one, else the number of content chunks
    error: str | None = None

    @property
    def ttft(self) -> float | None:
        return None if self.first_token is None else self.first_token - self.start

    def gaps(self) -> list[float]:
        """Inter-token latencies: time between consecutive content chunks."""
        return [b - a for a, b in zip(self.chunk_times, self.chunk_times[1:], strict=False)]


@dataclass(slots=True)
class Summary:
    """Aggregate figures of one scenario run (one server, one concurrency, one repeat)."""

    concurrency: int
    requests: int
    errors: int
    output_tokens: int
    wall_s: float
    output_tok_s: float
    ttft_p50_ms: float
    ttft_p95_ms: float
    itl_p50_ms: float
    itl_p95_ms: float
    prompt_tokens_mean: float


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method); NaN for no values."""
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be within [0, 100], got {q}")
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50.0)


def summarize(results: Sequence[RequestResult], concurrency: int) -> Summary:
    """Aggregate tok/s over the wall time from the first request's start to the last one's end."""
    ok = [r for r in results if r.error is None]
    wall = (max(r.end for r in results) - min(r.start for r in results)) if results else 0.0
    tokens = sum(r.output_tokens for r in ok)
    ttfts = [t * 1000.0 for r in ok if (t := r.ttft) is not None]
    gaps = [g * 1000.0 for r in ok for g in r.gaps()]
    prompts = [r.prompt_tokens for r in ok if r.prompt_tokens]
    return Summary(
        concurrency=concurrency,
        requests=len(results),
        errors=len(results) - len(ok),
        output_tokens=tokens,
        wall_s=wall,
        output_tok_s=tokens / wall if wall > 0 else math.nan,
        ttft_p50_ms=percentile(ttfts, 50),
        ttft_p95_ms=percentile(ttfts, 95),
        itl_p50_ms=percentile(gaps, 50),
        itl_p95_ms=percentile(gaps, 95),
        prompt_tokens_mean=sum(prompts) / len(prompts) if prompts else math.nan,
    )
