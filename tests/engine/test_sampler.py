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
