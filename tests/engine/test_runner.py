"""The runner over the real default model: both graphs agree, KV slots are independent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inference_service.engine.lm_head import full_logits
from inference_service.engine.loader import load_runner
from inference_service.engine.runner import ModelRunner, RunnerOptions
from inference_service.models.folder import load_model_config

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def runner(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> ModelRunner:
    options = RunnerOptions(
        device="cpu", num_slots=4, slot_capacity=256, dense_min_rows=2, cache_dir=tmp_path_factory.mktemp("dense")
    )
    return load_runner(load_model_config(model_dir), options)


def fwd(runner: ModelRunner, *args: Any, **kwargs: Any) -> np.ndarray:
    """A pass's whole logit rows (through the fp32 head when the graphs screen it)."""
    return full_logits(runner.forward(*args, **kwargs))


def test_quantized_and_dense_graphs_agree(runner: ModelRunner) -> None:
    prompt = np.random.default_rng(0).integers(20, 40000, 12)
    quantized = fwd(runner, prompt[None, :1], np.array([1]), 0)  # one row: the 4-bit graph
    dense = fwd(runner, prompt[None, :1].repeat(2, 0), np.array([1, 1]), 0)  # two rows: the dense twin
    assert np.abs(quantized[0] - dense[0]).max() < 1e-3
    assert np.abs(dense[0] - dense[1]).max() == 0
    assert quantized[0].argmax() == dense[0].argmax()


def test_batched_decode_matches_single_sequence(runner: ModelRunner) -> None:
    rng = np.random.default_rng(1)
    prompts = [rng.integers(20, 40000, n) for n in (7, 13, 4)]
    singles = []
    for p in prompts:  # each alone in slot 0, then one decode step
        fwd(runner, p[None, :], np.array([len(p)]), 0)
        singles.append(fwd(runner, np.array([[5]]), np.array([len(p) + 1]), 0)[0])
    for slot, p in enumerate(prompts):
        fwd(runner, p[None, :], np.array([len(p)]), slot)
    batched = fwd(runner, np.full((3, 1), 5), np.array([len(p) + 1 for p in prompts]), 0)
    for single, row in zip(singles, batched, strict=True):
        assert np.abs(single - row).max() < 1e-3
        assert single.argmax() == row.argmax()


def test_prefix_cache_reuse_gives_the_same_greedy_output(runner: ModelRunner, model_dir: Path) -> None:
    from inference_service.engine.core import EngineCore
    from inference_service.engine.prefix_cache import PrefixCacheConfig
    from inference_service.engine.scheduler import SchedulerConfig
    from inference_service.engine.tokenizer import Tokenizer
    from inference_service.engine.types import ChatMessage, GenerationRequest, SamplingParams, StoppingParams

    tokenizer = Tokenizer.from_dir(model_dir)

    def generate(core: EngineCore, question: str) -> str:
        text = tokenizer.apply_chat_template([ChatMessage("user", question)])
        core.add_request(
            GenerationRequest(
                question, tokenizer.encode(text), SamplingParams(temperature=0.0), StoppingParams(max_tokens=12)
            )
        )
        out = ""
        while core.has_work:
            out += "".join(o.text for o in core.step())
        return out

    def core(entries: int) -> EngineCore:
        return EngineCore(runner, tokenizer, (2,), SchedulerConfig(), 2, PrefixCacheConfig(max_entries=entries))

    cached, fresh = core(8), core(0)
    generate(cached, "What is the capital of France?")  # stores the system prompt + question
    questions = ["What is the capital of Italy?", "Name three fruits."]
    assert [generate(cached, q) for q in questions] == [generate(fresh, q) for q in questions]
    assert cached.prefix_cache.hit_tokens >= 2 * 16


def test_right_padded_batched_prefill_matches_single_prompts(runner: ModelRunner) -> None:
    rng = np.random.default_rng(2)
    prompts = [rng.integers(20, 40000, n) for n in (30, 26, 33)]
    singles = [fwd(runner, p[None, :], np.array([len(p)]), 0)[0] for p in prompts]
    width = max(len(p) for p in prompts)
    ids = np.zeros((3, width), np.int64)
    for row, p in enumerate(prompts):
        ids[row, : len(p)] = p
    lengths = np.array([len(p) for p in prompts])
    batched = fwd(runner, ids, lengths, 0, last=lengths - 1)
    for single, row in zip(singles, batched, strict=True):
        assert np.abs(single - row).max() < 1e-3
    after = fwd(runner, np.full((3, 1), 5), lengths + 1, 0)  # the padding left no trace in the KV
    for slot, p in enumerate(prompts):
        fwd(runner, p[None, :], np.array([len(p)]), slot)
        alone = fwd(runner, np.array([[5]]), np.array([len(p) + 1]), slot)[0]
        assert np.abs(alone - after[slot]).max() < 1e-3
