"""Speculative decoding on the real default model: the same tokens as plain decoding, alone and batched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference_service.engine.core import EngineCore
from inference_service.engine.loader import load_runner
from inference_service.engine.runner import ModelRunner, RunnerOptions
from inference_service.engine.scheduler import SchedulerConfig
from inference_service.engine.speculative import SpeculativeConfig
from inference_service.engine.tokenizer import Tokenizer
from inference_service.engine.types import (
    ChatMessage,
    GenerationRequest,
    OutputParams,
    SamplingParams,
    StoppingParams,
)
from inference_service.models.folder import load_model_config
from tests.engine.fakes import run

PARAGRAPH = (
    "The Amazon rainforest covers about 5.5 million square kilometres across nine countries. Brazil holds about "
    "60 percent of it, followed by Peru with 13 percent and Colombia with 10 percent. The forest is home to around "
    "390 billion trees divided into 16,000 species."
)
CODE = "def area(width, height):\n    result = width * height\n    return result\n"
PROMPTS = [
    f"{PARAGRAPH}\n\nCopy the sentence about Brazil exactly.",  # extraction
    f"{PARAGRAPH}\n\nHow many trees are in the Amazon, and how many species?",  # question answering over a context
    f"Rename the function to rectangle_area and keep everything else:\n\n{CODE}",  # code edit
    "Write a short story about a lighthouse keeper.",  # open-ended
]


@pytest.fixture(scope="module")
def parts(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelRunner, Tokenizer, list[list[int]]]:
    config = load_model_config(model_dir)
    options = RunnerOptions(device="cpu", num_slots=4, slot_capacity=512, cache_dir=tmp_path_factory.mktemp("graphs"))
    tokenizer = Tokenizer.from_dir(model_dir)
    prompts = [tokenizer.encode(tokenizer.apply_chat_template([ChatMessage("user", p)])) for p in PROMPTS]
    return load_runner(config, options), tokenizer, prompts


def generate(
    parts: tuple[ModelRunner, Tokenizer, list[list[int]]],
    speculative: SpeculativeConfig,
    sampling: SamplingParams,
    together: bool,
    logprobs: bool = False,
) -> tuple[list[list[int]], list[list[float]], EngineCore]:
    runner, tokenizer, prompts = parts
    core = EngineCore(runner, tokenizer, tokenizer.eos_token_ids, SchedulerConfig(), speculative=speculative)
    requests = [
        GenerationRequest(f"r{i}", p, sampling, StoppingParams(max_tokens=48), OutputParams(logprobs=logprobs))
        for i, p in enumerate(prompts)
    ]
    outputs = {}
    for request in requests:
        core.add_request(request)
        if not together:
            outputs.update(run(core, 400))
    outputs.update(run(core, 400))
    ids = [[t for o in outputs[(r.request_id, 0)] for t in o.token_ids] for r in requests]
    lps = [[lp.logprob for o in outputs[(r.request_id, 0)] for lp in o.logprobs] for r in requests]
    return ids, lps, core


PLAIN = SpeculativeConfig(method="none")


@pytest.mark.parametrize("together", [False, True], ids=["alone", "batched"])
def test_greedy_replies_are_the_same_token_for_token(parts: tuple, together: bool) -> None:
    greedy = SamplingParams(temperature=0.0)
    spec = SpeculativeConfig(max_batch=4)  # batched: drafting rows verify beside the decode pass of the others
    want, _, _ = generate(parts, PLAIN, greedy, together)
    got, _, core = generate(parts, spec, greedy, together)
    assert got == want
    assert core.load().accepted_draft_tokens > 0  # the copy-heavy prompts did accept drafts


def test_logprobs_and_penalties_are_those_of_plain_decoding(parts: tuple) -> None:
    sampling = SamplingParams(temperature=0.0, repetition_penalty=1.1, frequency_penalty=0.3)
    want, want_lps, _ = generate(parts, PLAIN, sampling, False, logprobs=True)
    got, got_lps, core = generate(parts, SpeculativeConfig(), sampling, False, logprobs=True)
    assert got == want and core.load().draft_tokens > 0
    assert [len(x) for x in got_lps] == [len(x) for x in got]  # one entry per emitted token
    for got_row, want_row in zip(got_lps, want_lps, strict=True):  # the same values, summed in another order
        assert np.allclose(got_row, want_row, atol=1e-4)


def test_a_seeded_sampled_request_repeats_itself(parts: tuple) -> None:
    sampling = SamplingParams(temperature=0.8, top_k=40, seed=1234)
    first, _, core = generate(parts, SpeculativeConfig(), sampling, False)
    again, _, _ = generate(parts, SpeculativeConfig(), sampling, False)
    assert first == again and core.load().draft_tokens > 0
