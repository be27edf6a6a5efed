"""Speculative decoding through the engine core with the fake runner: the same tokens as plain decoding, fewer
passes."""

from __future__ import annotations

from typing import Any, cast

from inference_service.engine.core import EngineCore
from inference_service.engine.scheduler import SchedulerConfig
from inference_service.engine.speculative import SpeculativeConfig
from inference_service.engine.types import SamplingParams, StoppingParams
from tests.engine.fakes import EOS, FakeRunner, FakeTokenizer, ScriptGrammar, make_core, outcome, req, run, text


def spec_core(max_batch: int = 1, **kw: Any) -> tuple[EngineCore, FakeRunner]:
    runner = FakeRunner(4, 64)
    config = SpeculativeConfig(ngram=3, max_draft=4, max_batch=max_batch, **kw)
    tokenizer = cast(Any, FakeTokenizer())
    return EngineCore(runner, tokenizer, (EOS,), SchedulerConfig(512), pad_token_id=0, speculative=config), runner


SPEC_CASES = [
    ([1, 2, 3, 4, 5, 1, 2, 3], StoppingParams(max_tokens=12)),  # drafts 4 5 1 2: two accepted, then 6
    ([5, 6, 7, 8, 9, 10, 5, 6, 7], StoppingParams(max_tokens=3)),  # max_tokens reached with the bonus token
    ([5, 6, 7, 8, 9, 10, 11, 5, 6, 7], StoppingParams(max_tokens=10, stop=("jk",))),  # stop across accepted tokens
    ([6, 30, 31, 0, 7, 5, 6, 30], StoppingParams(max_tokens=10)),  # EOS is an accepted drafted token
    ([20, 28, 29, 30, 31, 5, 28, 29, 30], StoppingParams(max_tokens=10)),  # EOS where the draft is rejected
    ([9, 8, 7, 6], StoppingParams(max_tokens=6)),  # nothing to look up: no draft
]


def test_speculation_gives_exactly_the_tokens_of_plain_decoding() -> None:
    drafted = []
    for prompt, stopping in SPEC_CASES:
        plain_core, _ = make_core()
        plain_core.add_request(req("r", prompt, stopping=stopping))
        core, _ = spec_core()
        core.add_request(req("r", prompt, stopping=stopping))
        assert outcome(run(core)[("r", 0)]) == outcome(run(plain_core)[("r", 0)]), prompt
        drafted.append(core.load().draft_tokens)
    assert all(drafted[:-1]) and drafted[-1] == 0  # every case but the last verified drafts


def test_accepted_drafts_save_passes() -> None:
    prompt = list(range(1, 20)) + list(range(1, 4))  # the continuation 4, 5, … is all in the prompt
    core, runner = spec_core()
    core.add_request(req("r", prompt, max_tokens=16))
    outs = run(core)[("r", 0)]
    assert [t for o in outs for t in o.token_ids] == list(range(4, 20))
    assert core.load().accepted_draft_tokens == core.load().draft_tokens > 0
    assert len(runner.calls) < 16 / 2  # a prefill, then up to 5 tokens a pass


def test_sampled_speculation_repeats_itself_with_a_seed() -> None:
    sampling = SamplingParams(temperature=1.0, top_k=3, seed=11)

    def once() -> list[int]:
        core, _ = spec_core()
        core.add_request(req("s", [1, 2, 3, 4, 5, 1, 2, 3], max_tokens=12, sampling=sampling))
        return outcome(run(core)[("s", 0)])[0]

    assert once() == once()


def test_no_drafts_above_max_batch_and_for_constrained_rows() -> None:
    core, _ = spec_core(max_batch=1)
    for rid in ("a", "b"):
        core.add_request(req(rid, [1, 2, 3, 4, 5, 1, 2, 3], max_tokens=6))
    outs = run(core)
    assert core.load().draft_tokens == 0 and text(outs[("a", 0)]) == text(outs[("b", 0)]) == "efghij"
    core, _ = spec_core()
    core.add_request(req("c", [1, 2, 3, 4, 5, 1, 2, 3], max_tokens=3, grammar=cast(Any, ScriptGrammar([4, 5, 6]))))
    assert text(run(core)[("c", 0)]) == "efg" and core.load().draft_tokens == 0
