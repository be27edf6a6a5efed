from __future__ import annotations

import numpy as np
import pytest

from inference_service.engine.sampler import SampleRequest, filter_candidates, log_softmax, sample
from inference_service.engine.types import SamplingParams

VOCAB = 50


def request(
    params: SamplingParams,
    seed: int = 0,
    counts: dict[int, int] | None = None,
    seen: list[int] | None = None,
    num_logprobs: int = -1,
) -> SampleRequest:
    return SampleRequest(
        params, np.random.default_rng(seed), counts or {}, np.asarray(seen or [], np.int64), num_logprobs
    )


@pytest.fixture
def logits() -> np.ndarray:
    return np.random.default_rng(1).standard_normal((3, VOCAB)).astype(np.float32) * 3


def test_greedy_is_argmax(logits: np.ndarray) -> None:
    result = sample(logits, [request(SamplingParams(temperature=0.0))] * 3)
    assert result.token_ids.tolist() == logits.argmax(axis=1).tolist()
    assert result.logprobs is None


def test_same_seed_same_tokens_different_seed_differs(logits: np.ndarray) -> None:
    params = SamplingParams(temperature=1.5)
    runs = [[int(sample(logits[:1], [request(params, seed=s)]).token_ids[0]) for s in range(40)] for _ in range(2)]
    assert runs[0] == runs[1]
    assert len(set(runs[0])) > 1


def test_top_k_one_equals_greedy(logits: np.ndarray) -> None:
    params = SamplingParams(temperature=1.0, top_k=1)
    for seed in range(10):
        assert sample(logits, [request(params, seed)] * 3).token_ids.tolist() == logits.argmax(1).tolist()


def test_top_p_keeps_smallest_prefix_reaching_mass() -> None:
    row = np.log(np.array([0.5, 0.3, 0.15, 0.05], np.float32))
    ids, probs = filter_candidates(row, SamplingParams(temperature=1.0, top_p=0.7))
    assert ids.tolist() == [0, 1]
    assert probs.sum() == pytest.approx(1.0)
    ids, _ = filter_candidates(row, SamplingParams(temperature=1.0, top_p=0.01))
    assert ids.tolist() == [0]


def test_min_p_drops_unlikely_tokens() -> None:
    row = np.log(np.array([0.6, 0.3, 0.05, 0.05], np.float32))
    ids, _ = filter_candidates(row, SamplingParams(temperature=1.0, min_p=0.2))
    assert ids.tolist() == [0, 1]


def test_sampling_frequencies_follow_distribution() -> None:
    probs = np.array([0.7, 0.2, 0.1], np.float32)
    rng_req = request(SamplingParams(temperature=1.0), seed=7)
    picks = [int(sample(np.log(probs)[None], [rng_req]).token_ids[0]) for _ in range(3000)]
    freq = np.bincount(picks, minlength=3) / len(picks)
    assert np.allclose(freq, probs, atol=0.03)


def test_logit_bias_forces_and_bans_tokens(logits: np.ndarray) -> None:
    target = int(logits[0].argmin())
    forced = sample(logits[:1], [request(SamplingParams(temperature=0.0, logit_bias={target: 100.0}))])
    assert forced.token_ids[0] == target
    best = int(logits[0].argmax())
    banned = sample(logits[:1], [request(SamplingParams(temperature=0.0, logit_bias={best: -100.0}))])
    assert banned.token_ids[0] != best


def test_presence_and_frequency_penalties_lower_repeated_tokens() -> None:
    row = np.array([[2.0, 1.9, 0.0]], np.float32)
    plain = sample(row, [request(SamplingParams(temperature=0.0))])
    assert plain.token_ids[0] == 0
    presence = sample(row, [request(SamplingParams(temperature=0.0, presence_penalty=0.5), counts={0: 1})])
    assert presence.token_ids[0] == 1
    frequency = sample(row, [request(SamplingParams(temperature=0.0, frequency_penalty=0.06), counts={0: 2})])
    assert frequency.token_ids[0] == 1
    negative = sample(
        np.array([[1.9, 2.0]], np.float32),
        [request(SamplingParams(temperature=0.0, presence_penalty=-0.5), counts={0: 1})],
    )
    assert negative.token_ids[0] == 0


def test_repetition_penalty_divides_positive_and_multiplies_negative() -> None:
    row = np.array([[2.0, 1.5, -1.0, -1.2]], np.float32)
    out = sample(row, [request(SamplingParams(temperature=0.0, repetition_penalty=2.0), seen=[0])])
    assert out.token_ids[0] == 1  # 2.0 / 2 = 1.0 < 1.5


def test_logprobs_are_model_distribution_and_top_sorted(logits: np.ndarray) -> None:
    result = sample(logits, [request(SamplingParams(temperature=0.0), num_logprobs=5)] * 3)
    expected = log_softmax(logits.astype(np.float64))
    assert result.logprobs is not None
    for i in range(3):
        assert result.logprobs[i] == pytest.approx(expected[i, result.token_ids[i]], abs=1e-5)
        assert result.top_ids[i].tolist() == np.argsort(-expected[i])[:5].tolist()
        assert np.all(np.diff(result.top_logprobs[i]) <= 0)
    assert np.exp(expected).sum(axis=1) == pytest.approx(np.ones(3))


def reference_candidates(row: np.ndarray, p: SamplingParams) -> tuple[np.ndarray, np.ndarray]:
    """The straightforward definition: sort the whole row, then cut."""
    scaled = row / np.float32(p.temperature)
    ids = np.argsort(-scaled, kind="stable")
    if 0 < p.top_k < len(ids):
        ids = ids[: p.top_k]
    probs = np.exp(scaled[ids] - scaled[ids[0]]).astype(np.float64)
    probs /= probs.sum()
    keep = len(ids)
    if p.top_p < 1.0:
        keep = min(keep, int(np.searchsorted(np.cumsum(probs), p.top_p)) + 1)
    if p.min_p > 0.0:
        keep = min(keep, max(1, int((probs >= p.min_p * probs[0]).sum())))
    return ids[:keep], probs[:keep] / probs[:keep].sum()


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(temperature=0.8, top_p=0.9),
        SamplingParams(temperature=1.0, top_p=0.999),  # the pool grows past its first sizes
        SamplingParams(temperature=1.3, min_p=0.05),
        SamplingParams(temperature=1.0, top_p=0.95, min_p=0.01),
        SamplingParams(temperature=0.7, top_k=50, top_p=0.9),
        SamplingParams(temperature=1.0),
    ],
    ids=["top_p", "top_p-wide", "min_p", "top_p+min_p", "top_k+top_p", "plain"],
)
def test_candidates_match_a_full_sort_on_a_real_sized_vocab(params: SamplingParams) -> None:
    rng = np.random.default_rng(3)
    for scale in (0.5, 3.0, 8.0):  # flat to peaked rows
        row = (rng.standard_normal(49152) * scale).astype(np.float32)
        ids, probs = filter_candidates(row, params)
        expected_ids, expected_probs = reference_candidates(row, params)
        if params.top_k == 0 and params.top_p >= 1.0 and params.min_p <= 0.0:
            order = np.lexsort((ids, -row[ids]))  # untruncated: every token, in id order
            ids, probs = ids[order], probs[order]
        assert ids.tolist() == expected_ids.tolist()
        assert np.allclose(probs, expected_probs, rtol=1e-4, atol=1e-7)


def test_penalized_rows_leave_the_others_and_the_input_alone(logits: np.ndarray) -> None:
    before = logits.copy()
    target = int(logits[1].argmin())
    plain, biased = SamplingParams(temperature=0.0), SamplingParams(temperature=0.0, logit_bias={target: 100.0})
    result = sample(logits, [request(plain), request(biased), request(plain)])
    assert result.token_ids.tolist() == [int(logits[0].argmax()), target, int(logits[2].argmax())]
    assert np.array_equal(logits, before)
