"""A screened head samples exactly what the full fp32 head samples."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, cast

import numpy as np
import onnxruntime as ort
import pytest

from inference_service.engine import lm_head
from inference_service.engine.lm_head import ExactHead, ScreenedRow, ScreenedRows, candidates, resolve
from inference_service.engine.sampler import SampleRequest, sample
from inference_service.engine.types import SamplingParams

V, K = 500, 16


class FakeFullHead:
    """Stands in for the head's ORT session: hidden → hidden · Wᵀ."""

    def __init__(self, weight: np.ndarray) -> None:
        self.weight = weight
        self.calls = 0

    def run(self, _outputs: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.calls += 1
        return [feeds["hidden"] @ self.weight.T]


def head(rng: np.random.Generator) -> tuple[ExactHead, FakeFullHead]:
    weight = rng.standard_normal((V, K)).astype(np.float32)
    fake = FakeFullHead(weight)
    return ExactHead(cast(ort.InferenceSession, fake), weight), fake


def screened(exact_head: ExactHead, hidden: np.ndarray, rng: np.random.Generator) -> ScreenedRows:
    """Bounds as the graph gives them: an inexact screen within ± a per-token bound of the exact logits."""
    exact = hidden @ exact_head.weight.T
    bound = rng.random(exact.shape).astype(np.float32) * 0.5
    screen = exact + (rng.random(exact.shape).astype(np.float32) * 2 - 1) * bound
    return ScreenedRows(screen - bound, screen + bound, hidden, exact_head)


def request(num_logprobs: int = -1, seed: int = 0, seen: tuple[int, ...] = (), **params: Any) -> SampleRequest:
    return SampleRequest(
        params=SamplingParams(**params),
        generator=np.random.default_rng(seed),
        output_counts={t: 2 for t in seen},
        seen_tokens=np.array(seen, np.int64),
        num_logprobs=num_logprobs,
    )


def fresh(requests: list[SampleRequest]) -> list[SampleRequest]:
    """The same requests with generators in their initial state."""
    return [dataclasses.replace(r, generator=np.random.default_rng(i)) for i, r in enumerate(requests)]


REQUESTS = [
    request(temperature=0.0),
    request(temperature=0.0, logit_bias={17: 30.0}),  # a token the screen ranks low can win through bias
    request(temperature=0.0, seen=(1, 2, 3, 4), repetition_penalty=1.3, frequency_penalty=0.7),
    request(temperature=0.0, seen=(5, 6), frequency_penalty=-2.0, presence_penalty=-2.0),  # negative: boosts
    request(temperature=0.8, top_k=5),
    request(temperature=1.0, top_k=40, top_p=0.9, min_p=0.05),
    request(temperature=0.7, top_k=1),
]


def test_resolved_rows_sample_what_the_full_rows_sample() -> None:
    rng = np.random.default_rng(0)
    exact_head, fake = head(rng)
    for trial in range(20):
        hidden = rng.standard_normal((len(REQUESTS), K)).astype(np.float32)
        rows = screened(exact_head, hidden, rng)
        requests = fresh(REQUESTS)
        resolved = resolve([rows[i] for i in range(len(rows))], requests)
        full = hidden @ exact_head.weight.T
        got = sample(resolved, requests).token_ids
        want = sample(full, fresh(REQUESTS)).token_ids
        assert got.tolist() == want.tolist(), f"trial {trial}"
        finite = np.isfinite(resolved)
        assert np.allclose(resolved[finite], full[finite], atol=1e-5)  # candidates carry exact values
        assert finite.sum(axis=1).max() < V  # and the screen did rule tokens out
    assert fake.calls == 0  # none of these needed the full head


def test_rows_that_need_the_whole_distribution_run_the_full_head() -> None:
    rng = np.random.default_rng(1)
    exact_head, fake = head(rng)
    hidden = rng.standard_normal((3, K)).astype(np.float32)
    rows = screened(exact_head, hidden, rng)
    requests = [
        request(num_logprobs=2, temperature=0.0),  # logprobs: the full softmax
        request(temperature=1.0),  # no top-k: every token can be drawn
        request(temperature=0.0),
    ]
    resolved = resolve([rows[0], rows[1], rows[2]], requests)
    full = hidden @ exact_head.weight.T
    assert np.array_equal(resolved[:2], full[:2])
    assert not np.isfinite(resolved[2]).all()
    assert fake.calls == 1  # both in one call
    assert candidates(rows[0], requests[0]) is None and candidates(rows[1], requests[1]) is None


def test_candidates_are_the_tokens_that_can_still_win() -> None:
    lower = np.zeros(V, np.float32)
    upper = np.full(V, 0.5, np.float32)
    lower[10], upper[10] = 3.0, 4.0  # certainly above every other token's upper bound...
    lower[11], upper[11] = 2.5, 3.5  # ...except this one's, whose range overlaps
    row = ScreenedRow(lower, upper, np.zeros(K, np.float32), cast(ExactHead, None))
    assert set(candidates(row, request(temperature=0.0)).tolist()) == {10, 11}  # type: ignore[union-attr]
    top3 = candidates(row, request(temperature=1.0, top_k=3))
    assert top3 is not None and {10, 11}.issubset(set(top3.tolist())) and len(top3) == V  # the rest tie at 0..0.5
    biased = candidates(row, request(temperature=0.0, logit_bias={99: 10.0}))
    assert biased is not None and biased.tolist() == [99]


@pytest.mark.parametrize("allowed_count", [1, 3, 40, 200, 499])
def test_constrained_rows_choose_only_allowed_tokens_exactly(allowed_count: int) -> None:
    """With a mask, the resolved rows sample what the full rows sample with the same mask, never a disallowed
    token, also when fewer tokens are allowed than top-k; few allowed tokens need neither screen nor full head."""
    rng = np.random.default_rng(allowed_count)
    exact_head, fake = head(rng)
    constrained = [*REQUESTS, request(temperature=1.0), request(temperature=0.9, top_k=50)]
    for trial in range(10):
        masks = []
        for _ in constrained:
            mask = np.zeros(V, bool)
            mask[rng.choice(V, allowed_count, replace=False)] = True
            masks.append(mask)
        requests = [dataclasses.replace(r, allowed=m) for r, m in zip(fresh(constrained), masks, strict=True)]
        hidden = rng.standard_normal((len(requests), K)).astype(np.float32)
        rows = screened(exact_head, hidden, rng)
        calls = fake.calls
        got = sample(resolve([rows[i] for i in range(len(rows))], requests), requests).token_ids
        full = hidden @ exact_head.weight.T
        again = [dataclasses.replace(r, allowed=m) for r, m in zip(fresh(constrained), masks, strict=True)]
        assert got.tolist() == sample(full, again).token_ids.tolist(), f"trial {trial}"
        assert all(masks[i][t] for i, t in enumerate(got.tolist()))
        if allowed_count <= lm_head.FEW_ALLOWED:  # the exact logits of the allowed tokens were enough for every row
            assert fake.calls == calls


def test_too_many_candidates_fall_back_to_the_full_head(monkeypatch: pytest.MonkeyPatch) -> None:
    row = ScreenedRow(np.zeros(V, np.float32), np.ones(V, np.float32), np.zeros(K, np.float32), cast(ExactHead, None))
    assert candidates(row, request(temperature=0.0)) is not None
    monkeypatch.setattr(lm_head, "MAX_CANDIDATES", V - 1)
    assert candidates(row, request(temperature=0.0)) is None


def test_non_finite_bounds_fall_back_to_the_full_head() -> None:
    nan = np.full(V, np.nan, np.float32)
    row = ScreenedRow(nan, nan, np.zeros(K, np.float32), cast(ExactHead, None))
    assert candidates(row, request(temperature=0.0)) is None


@pytest.mark.model
def test_real_model_screened_engine_generates_what_the_fp32_head_generates(model_dir: Path, tmp_path: Path) -> None:
    """Greedy and seeded top-k chats, batched (dense twin) and alone (4-bit graph), with and without the screen."""
    from inference_service.engine.core import EngineCore
    from inference_service.engine.loader import load_runner
    from inference_service.engine.runner import RunnerOptions
    from inference_service.engine.scheduler import SchedulerConfig
    from inference_service.engine.tokenizer import Tokenizer
    from inference_service.engine.types import ChatMessage, GenerationRequest, StoppingParams
    from inference_service.models.folder import load_model_config
    from tests.engine.fakes import generated_ids

    config = load_model_config(model_dir)
    tokenizer = Tokenizer.from_dir(model_dir)
    questions = ["What is the capital of France?", "Write a haiku about rain.", "List three prime numbers."]
    samplings = [
        SamplingParams(temperature=0.0),
        SamplingParams(temperature=0.7, top_k=50, top_p=0.9, seed=7),
        SamplingParams(temperature=0.0, repetition_penalty=1.2),
    ]

    prompts = [tokenizer.encode(tokenizer.apply_chat_template([ChatMessage("user", q)])) for q in questions]

    def generate(screen: bool, together: bool) -> list[list[int]]:
        options = RunnerOptions(device="cpu", num_slots=4, slot_capacity=256, screen_head=screen, cache_dir=tmp_path)
        runner = load_runner(config, options)
        assert (runner.head is not None) == screen
        core = EngineCore(runner, tokenizer, config.eos_token_ids, SchedulerConfig())
        requests = [
            GenerationRequest(f"r{i}", prompts[i], sampling, StoppingParams(max_tokens=24))
            for i, sampling in enumerate(samplings)
        ]
        return generated_ids(core, requests, together)

    for together in (False, True):
        assert generate(True, together) == generate(False, together)
