from __future__ import annotations

import math

import pytest

from bench.stats import RequestResult, percentile, summarize


def test_percentile_interpolates_like_numpy_linear() -> None:
    values = [10.0, 20.0, 30.0, 40.0]
    assert percentile(values, 0) == 10.0
    assert percentile(values, 100) == 40.0
    assert percentile(values, 50) == 25.0
    assert percentile(values, 95) == pytest.approx(38.5)
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0  # unsorted input


def test_percentile_edge_cases() -> None:
    assert math.isnan(percentile([], 50))
    assert percentile([7.0], 95) == 7.0
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_request_result_ttft_and_gaps() -> None:
    r = RequestResult(start=1.0, end=2.0, first_token=1.25, chunk_times=[1.25, 1.3, 1.4])
    assert r.ttft == pytest.approx(0.25)
    assert r.gaps() == pytest.approx([0.05, 0.1])
    assert RequestResult(start=0.0, end=1.0).ttft is None


def test_summarize_counts_only_successful_tokens_over_the_whole_wall_time() -> None:
    ok = RequestResult(start=0.0, end=2.0, first_token=0.5, chunk_times=[0.5, 1.0, 2.0], prompt_tokens=94,
                       output_tokens=100)  # fmt: skip
    ok2 = RequestResult(
        start=1.0, end=4.0, first_token=1.1, chunk_times=[1.1, 1.2], prompt_tokens=96, output_tokens=100
    )
    failed = RequestResult(start=0.5, end=0.6, output_tokens=5, error="HTTP 500")
    s = summarize([ok, ok2, failed], concurrency=2)
    assert (s.requests, s.errors, s.output_tokens) == (3, 1, 200)
    assert s.wall_s == 4.0
    assert s.output_tok_s == 50.0
    assert s.ttft_p50_ms == pytest.approx(300.0)  # TTFTs 500 ms and 100 ms
    assert s.itl_p50_ms == pytest.approx(500.0)  # gaps 500, 1000, 100 ms
    assert s.prompt_tokens_mean == 95.0


def test_summarize_of_nothing_is_nan_not_an_error() -> None:
    s = summarize([], concurrency=1)
    assert s.requests == 0 and math.isnan(s.output_tok_s) and math.isnan(s.ttft_p50_ms)
