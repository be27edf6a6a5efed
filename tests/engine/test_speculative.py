"""Prompt-lookup drafting and the acceptance rule: emitted tokens follow the model's distribution exactly."""

from __future__ import annotations

import numpy as np
import pytest

from inference_service.engine.sampler import SampleRequest, filter_candidates
from inference_service.engine.speculative import Drafter, SpeculativeConfig, choose
from inference_service.engine.types import SamplingParams


def test_drafts_what_followed_the_latest_earlier_occurrence() -> None:
    drafter = Drafter(ngram=2)
    tokens = [1, 2, 3, 4, 9, 1, 2, 5, 6, 7, 1, 2]
    assert drafter.draft(tokens, 3) == [5, 6, 7]  # the latest earlier "1 2" is at 5, not the first at 0
    assert drafter.draft(tokens, 1) == [5]
    assert drafter.draft([*tokens, 8], 3) == []  # "2 8" never occurred
    assert drafter.draft([*tokens, 8, 1, 2], 4) == [8, 1, 2]  # up to the end of what is known
    assert Drafter(ngram=3).draft([1, 2, 3], 4) == []


def test_a_rejected_drafter_pauses_then_tries_again() -> None:
    config = SpeculativeConfig(min_accepted=0.8, backoff=4)
    drafter = Drafter(ngram=1)
    for _ in range(3):
        drafter.record(drafted=4, accepted=0, emitted=1, config=config)
    assert drafter.paused == 4 and drafter.draft([1, 2, 1], 2) == []
    drafter.record(drafted=0, accepted=0, emitted=4, config=config)
    assert drafter.paused == 0 and drafter.draft([1, 2, 1], 2) == [2, 1]


def _req(params: SamplingParams, seed: int, allowed: np.ndarray | None = None) -> SampleRequest:
    return SampleRequest(params, np.random.default_rng(seed), {}, np.empty(0, np.int64), -1, allowed)


def test_greedy_accepts_exactly_the_argmax() -> None:
    logits = np.array([0.1, 3.0, 2.9, -1.0], np.float32)
    greedy = SamplingParams(temperature=0.0)
    assert choose(logits, _req(greedy, 0), 1) == (1, True)
    assert choose(logits, _req(greedy, 0), 2) == (1, False)
    assert choose(logits, _req(greedy, 0), None) == (1, False)
    biased = SamplingParams(temperature=0.0, logit_bias={2: 1.0})
    assert choose(logits, _req(biased, 0), 2) == (2, True)  # processed as the sampler processes it


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(temperature=1.0),
        SamplingParams(temperature=0.7, top_k=4),
        SamplingParams(temperature=1.3, top_p=0.8),
        SamplingParams(temperature=1.0, min_p=0.1, presence_penalty=0.5),
    ],
    ids=["plain", "top-k", "top-p", "min-p"],
)
def test_property_emitted_tokens_follow_the_sampling_distribution(params: SamplingParams) -> None:
    """Whatever the (deterministic) draft, accept-or-resample emits token t with probability p(t)."""
    rng = np.random.default_rng(0)
    trials = 20_000
    for case in range(4):
        logits = (rng.standard_normal(8) * 1.5).astype(np.float32)
        ids, probs = filter_candidates(logits, params)
        p = np.zeros(8)
        p[ids] = probs
        draft = int(rng.integers(8))  # likely, unlikely, or outside the candidates
        counts = np.zeros(8)
        generator = np.random.default_rng(case)
        for _ in range(trials):
            req = SampleRequest(params, generator, {}, np.empty(0, np.int64), -1)
            token, accepted = choose(logits, req, draft)
            assert accepted == (token == draft)
            counts[token] += 1
        # 4.5 standard deviations of a binomial proportion: a wrong rule (e.g. always accepting) is far outside
        tolerance = 4.5 * np.sqrt(p * (1 - p) / trials) + 1e-9
        assert (np.abs(counts / trials - p) <= tolerance).all(), (case, draft, counts / trials, p)


def test_seeded_choices_repeat_themselves() -> None:
    logits = np.random.default_rng(3).standard_normal(50).astype(np.float32)
    params = SamplingParams(temperature=0.9, top_k=20, seed=5)
    runs = [[choose(logits, _req(params, 5), d) for d in (3, 7, None)] for _ in range(2)]
    assert runs[0] == runs[1]
