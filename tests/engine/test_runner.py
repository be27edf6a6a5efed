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


@pytest.fixture(scope="module", params=["fp32", "fp16"])
def folder(request: pytest.FixtureRequest) -> Path:
    """The exact fp32 graph (CPU) and the fp16 graph (what CUDA runs): every test here runs on both."""
    return Path(request.getfixturevalue("model_dir" if request.param == "fp32" else "model_dir_fp16"))


@pytest.fixture(scope="module")
def runner(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> ModelRunner:
    options = RunnerOptions(
        device="cpu", num_slots=4, slot_capacity=256, dense_min_rows=2, cache_dir=tmp_path_factory.mktemp("cpu-graphs")
    )
    return load_runner(load_model_config(folder), options)


@pytest.fixture(scope="module")
def atol(folder: Path) -> float:
    """Same tokens, other batch shapes: fp32 differs only in summation order; fp16 kernels round differently
    per shape (observed up to 0.05 on logits of ~30; tests/models/test_converter_precision.py measures more)."""
    return 0.25 if folder.name.endswith("-fp16") else 1e-3


def test_kv_and_graphs_follow_the_model(runner: ModelRunner, folder: Path) -> None:
    fp16 = folder.name.endswith("-fp16")
    assert runner.kv.layout.dtype.name == ("fp16" if fp16 else "fp32")
    assert runner.kv.read(0, 1).dtype == (np.float16 if fp16 else np.float32)
    assert runner.kv.layout.token_bytes == 2 * 30 * 3 * 64 * (2 if fp16 else 4)
    assert len(runner._graphs) == (1 if fp16 else 2)  # the dense twin computes in fp32: fp32 graphs only
    assert (runner.head is None) == fp16
    logits = fwd(runner, np.array([[1, 2]]), np.array([2]), 0)
    assert logits.dtype == np.float32 and logits.shape == (1, 49152)


def fwd(runner: ModelRunner, *args: Any, **kwargs: Any) -> np.ndarray:
    """A pass's whole logit rows (through the fp32 head when the graphs screen it)."""
    return full_logits(runner.forward(*args, **kwargs))


def test_quantized_and_dense_graphs_agree(runner: ModelRunner, atol: float) -> None:
    prompt = np.random.default_rng(0).integers(20, 40000, 12)
    quantized = fwd(runner, prompt[None, :1], np.array([1]), 0)  # one row: the 4-bit graph
    dense = fwd(runner, prompt[None, :1].repeat(2, 0), np.array([1, 1]), 0)  # two rows: the dense twin
    assert np.abs(quantized[0] - dense[0]).max() < atol
    assert np.abs(dense[0] - dense[1]).max() == 0
    assert quantized[0].argmax() == dense[0].argmax()


def test_batched_decode_matches_single_sequence(runner: ModelRunner, atol: float) -> None:
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
        assert np.abs(single - row).max() < atol
        assert single.argmax() == row.argmax()


def test_prefix_cache_reuse_gives_the_same_greedy_output(runner: ModelRunner, folder: Path) -> None:
    from inference_service.engine.core import EngineCore
    from inference_service.engine.prefix_cache import PrefixCacheConfig
    from inference_service.engine.scheduler import SchedulerConfig
    from inference_service.engine.tokenizer import Tokenizer
    from inference_service.engine.types import ChatMessage, GenerationRequest, SamplingParams, StoppingParams

    tokenizer = Tokenizer.from_dir(folder)

    def generate(core: EngineCore, question: str) -> str:
        text = tokenizer.apply_chat_template([ChatMessage("user", question)])
        core.add_request(
            GenerationRequest(
                question, tokenizer.encode(text), SamplingParams(temperature=0.0), StoppingParams(max_tokens=12)
            )
        )
        out = ""
        while core.has_work:
            out += "".join(o.text for o in core.step().outputs)
        return out

    def core(entries: int) -> EngineCore:
        return EngineCore(runner, tokenizer, (2,), SchedulerConfig(), 2, PrefixCacheConfig(max_entries=entries))

    cached, fresh = core(8), core(0)
    generate(cached, "What is the capital of France?")  # stores the system prompt + question
    questions = ["What is the capital of Italy?", "Name three fruits."]
    assert [generate(cached, q) for q in questions] == [generate(fresh, q) for q in questions]
    assert cached.prefix_cache.hit_tokens >= 2 * 16


def test_right_padded_batched_prefill_matches_single_prompts(runner: ModelRunner, atol: float) -> None:
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
        assert np.abs(single - row).max() < atol
    after = fwd(runner, np.full((3, 1), 5), lengths + 1, 0)  # the padding left no trace in the KV
    for slot, p in enumerate(prompts):
        fwd(runner, p[None, :], np.array([len(p)]), slot)
        alone = fwd(runner, np.array([[5]]), np.array([len(p) + 1]), slot)[0]
        assert np.abs(alone - after[slot]).max() < atol
