"""Fair prefill with the fake runner: short prompts get their first token while a long prompt prefills, in a bounded
number of steps, and the long prompt still finishes in a bounded number of steps.

The bounds these tests prove, with T = long_prefill_token_threshold, P = max_num_partial_prefills and a step budget
(max_batched_tokens − decode rows) of at least P × T:
- a short prompt (at most T tokens) with k short prompts older than it still to prefill gets its first token in
  step ⌊k / (P − 1)⌋ + 1 after it is admitted while a long prompt prefills (⌊k / P⌋ + 1 when none does): one step
  for a prompt that arrives alone;
- a long prompt with N tokens pending and no older long prompt gets its first token within ⌈N / T⌉ steps,
  however many short prompts arrive.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest

from inference_service.engine.core import EngineCore
from inference_service.engine.loader import load_runner
from inference_service.engine.prefix_cache import PrefixCacheConfig
from inference_service.engine.runner import RunnerOptions
from inference_service.engine.scheduler import SchedulerConfig
from inference_service.engine.tokenizer import Tokenizer
from inference_service.engine.types import ChatMessage, ChoiceOutput, SamplingParams
from inference_service.models.folder import load_model_config
from tests.engine.fakes import EOS, FakeRunner, FakeTokenizer, generated_ids, req

T, P = 16, 4
LONG = [1 + i % 29 for i in range(600)]  # 600 tokens, no EOS among them


def make_core(
    threshold: int = T,
    partial: int = P,
    num_slots: int = 8,
    budget: int = 0,
    prefix_entries: int = 0,
    max_batched_tokens: int = 128,
    capacity: int = 1024,
) -> tuple[EngineCore, FakeRunner]:
    runner = FakeRunner(num_slots, capacity, budget_tokens=budget)
    config = SchedulerConfig(
        max_batched_tokens, long_prefill_token_threshold=threshold, max_num_partial_prefills=partial
    )
    prefix = PrefixCacheConfig(max_entries=prefix_entries, block=16, max_tokens=512)
    return EngineCore(runner, cast(Any, FakeTokenizer()), (EOS,), config, prefix_cache=prefix), runner


def short(i: int, **kw: Any) -> Any:
    return req(f"s{i}", [1 + (i + j) % 29 for j in range(8)], max_tokens=kw.pop("max_tokens", 3), **kw)


def drive(
    core: EngineCore, arrivals: Callable[[int], list[Any]], max_steps: int = 400
) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int], dict[str, int]]:
    """Step until idle; before step s (1-based) add arrivals(s). Returns per choice the step of its first token and
    of its last output, and per request the step it was added in."""
    first: dict[tuple[str, int], int] = {}
    last: dict[tuple[str, int], int] = {}
    added: dict[str, int] = {}
    for step in range(1, max_steps + 1):
        for request in arrivals(step):
            core.add_request(request)
            added[request.request_id] = step
        if not core.has_work:
            break
        outs: list[ChoiceOutput] = core.step().outputs
        for out in outs:
            first.setdefault((out.request_id, out.index), step)
            last[(out.request_id, out.index)] = step
    assert not core.has_work
    return first, last, added


def prefill_widths(runner: FakeRunner) -> list[int]:
    return [seq for _, _, seq in runner.calls if seq > 1]


def test_short_prompts_arriving_during_a_long_prefill_get_their_first_token_in_their_first_step() -> None:
    core, runner = make_core()
    first, _, added = drive(core, lambda s: [req("long", LONG, max_tokens=2)] if s == 1 else [short(s)] * (s <= 30))
    for step in range(2, 31):
        assert first[(f"s{step}", 0)] == added[f"s{step}"], step  # bound: 1 step
    assert first[("long", 0)] <= math.ceil(len(LONG) / T)  # bound: ⌈N / T⌉ = 38 steps, shorts or not
    assert first[("long", 0)] > 30  # it was still prefilling while every short prompt came and went
    assert max(prefill_widths(runner)) <= T


def test_a_burst_of_short_prompts_shares_the_steps_with_the_long_prompt() -> None:
    core, _ = make_core()
    burst = [short(i) for i in range(7)]
    first, _, _ = drive(core, lambda s: [req("long", LONG, max_tokens=2)] if s == 1 else burst if s == 3 else [])
    # k older short prompts pending → first token in step ⌊k / (P − 1)⌋ + 1 after admission (step 3)
    assert [first[(f"s{i}", 0)] - 3 + 1 for i in range(7)] == [1, 1, 1, 2, 2, 2, 3]
    assert first[("long", 0)] <= math.ceil(len(LONG) / T)
    alone, _ = make_core()
    first, _, _ = drive(alone, lambda s: burst if s == 1 else [])
    assert [first[(f"s{i}", 0)] for i in range(7)] == [1, 1, 1, 1, 2, 2, 2]  # no long prompt: ⌊k / P⌋ + 1


def test_without_the_threshold_short_prompts_wait_for_the_whole_long_prefill() -> None:
    core, _ = make_core(threshold=0)
    first, _, _ = drive(core, lambda s: [req("long", LONG, max_tokens=2)] if s == 1 else [short(0)] * (s == 2))
    assert first[("s0", 0)] >= first[("long", 0)]  # the old order: oldest first, as much as the budget allows


def test_the_long_prompt_is_not_starved_by_a_flood_of_short_prompts() -> None:
    # more short prompts every step than the step has places for: the oldest long prompt keeps its place
    core, _ = make_core(num_slots=16)

    def arrivals(step: int) -> list[Any]:
        if step == 1:
            return [req("long", LONG, max_tokens=1)]
        return [short(100 * step + i, max_tokens=1) for i in range(5)] if step <= 50 else []

    first, _, _ = drive(core, arrivals)
    assert first[("long", 0)] <= math.ceil(len(LONG) / T)


def test_long_prompts_behind_the_first_wait_behind_short_ones_but_progress() -> None:
    core, runner = make_core()
    first, _, _ = drive(
        core,
        lambda s: [req("a", LONG, max_tokens=1), req("b", LONG, max_tokens=1)] if s == 1 else [short(s)] * (s <= 20),
    )
    assert first[("a", 0)] <= math.ceil(len(LONG) / T)
    assert all(first[(f"s{s}", 0)] == s for s in range(2, 21))
    # a prefills every step; b takes a place when one is left, and goes first once a is done
    assert first[("b", 0)] <= first[("a", 0)] + math.ceil(len(LONG) / T)
    assert max(prefill_widths(runner)) <= T


def test_step_prefill_work_stays_within_partial_prefills_times_threshold() -> None:
    core, runner = make_core(max_batched_tokens=512)
    drive(core, lambda s: [req(f"l{s}", LONG[: 100 + s], max_tokens=2)] * (s <= 6))  # six long prompts
    assert max(prefill_widths(runner)) <= T
    per_pass_tokens = [batch * seq for _, batch, seq in runner.calls if seq > 1]
    assert max(per_pass_tokens) <= P * T


def test_n_choices_of_a_short_prompt_all_get_their_first_token_in_one_step() -> None:
    core, _ = make_core()
    sampling = SamplingParams(temperature=1.0, seed=5)
    arrivals = {1: [req("long", LONG, max_tokens=1)], 3: [req("n3", list(range(1, 9)), max_tokens=3, n=3,
                                                               sampling=sampling)]}  # fmt: skip
    first, _, _ = drive(core, lambda s: arrivals.get(s, []))
    assert [first[("n3", i)] for i in range(3)] == [3, 3, 3]  # 1 long + 3 choices = P places
    assert first[("long", 0)] <= math.ceil(len(LONG) / T)


def test_n_choices_of_a_long_prompt_progress_together_when_no_short_prompt_waits() -> None:
    core, _ = make_core()
    first, _, _ = drive(core, lambda s: [req("long", LONG, max_tokens=1, n=2)] if s == 1 else [])
    assert first[("long", 0)] == first[("long", 1)] == math.ceil(len(LONG) / T)


def test_with_the_prefix_cache_a_long_prompt_starts_from_its_cached_prefix_and_short_ones_still_go_first() -> None:
    core, runner = make_core(prefix_entries=4)
    head = LONG[:200]
    drive(core, lambda s: [req("seed", [*head, 3], max_tokens=1)] if s == 1 else [])  # stores 192 tokens (blocks)
    runner.calls.clear()
    first, _, _ = drive(core, lambda s: [req("long", LONG, max_tokens=1)] if s == 1 else [short(s)] * (s <= 10))
    assert core.prefix_cache.hit_tokens == 192
    assert first[("long", 0)] <= math.ceil((len(LONG) - 192) / T)
    assert all(first[(f"s{s}", 0)] == s for s in range(2, 11))
    assert max(prefill_widths(runner)) <= T


def test_with_preemption_the_recomputed_sequence_and_the_long_prompt_both_finish() -> None:
    # the KV budget (660 tokens) holds the long prompt and three short ones; the short ones outgrow it as they
    # decode, the newest is preempted and recomputed (prompt + output: a long prompt of its own)
    core, _ = make_core(budget=660, capacity=640)
    first, last, _ = drive(
        core,
        lambda s: [req("long", LONG, max_tokens=1)] if s == 1 else [short(s, max_tokens=60)] * (2 <= s <= 4),
    )
    assert core.scheduler.num_preemptions >= 1
    assert set(last) == {("long", 0), ("s2", 0), ("s3", 0), ("s4", 0)}
    assert all(first[(f"s{s}", 0)] == s for s in (2, 3, 4))


def test_greedy_outputs_are_the_same_with_and_without_fair_prefill() -> None:
    requests = [req("long", LONG, max_tokens=8), *(short(i, max_tokens=6) for i in range(6))]
    fair, _ = make_core()
    oldest_first, _ = make_core(threshold=0)
    assert generated_ids(fair, requests, together=True) == generated_ids(oldest_first, requests, together=True)
    preempting, _ = make_core(budget=660, capacity=640)
    requests = [req("long", LONG, max_tokens=8), *(short(i, max_tokens=30) for i in range(3))]
    assert generated_ids(preempting, requests, together=True) == generated_ids(oldest_first, requests, together=True)
    assert preempting.scheduler.num_preemptions >= 1


@pytest.mark.model
def test_real_model_greedy_outputs_are_the_same_with_and_without_fair_prefill(model_dir: Path) -> None:
    """A ~290-token chat prompt and three short ones through the real model: chunks of at most 64 tokens shared
    with the short prompts, or oldest first (128-token steps: the short ones wait), give the same greedy tokens."""
    config = load_model_config(model_dir)
    tokenizer = Tokenizer.from_dir(model_dir)

    def chat(question: str) -> list[int]:
        return tokenizer.encode(tokenizer.apply_chat_template([ChatMessage("user", question)]))

    long = chat("Summarise this. " + "The printing press spread across Europe and literacy rose. " * 25)
    prompts = [long, chat("Say hello."), chat("What is the capital of France?"), chat("Name a colour.")]
    assert len(long) > 250 and all(len(p) <= 64 for p in prompts[1:])

    def generate(threshold: int) -> list[list[int]]:
        # the 4-bit graph for every pass (no dense twin): equal rows → equal numerics, whatever shares the pass
        options = RunnerOptions(device="cpu", num_slots=4, slot_capacity=512, dense_min_rows=0)
        runner = load_runner(config, options)
        scheduler = SchedulerConfig(128, long_prefill_token_threshold=threshold, max_num_partial_prefills=4)
        core = EngineCore(runner, tokenizer, config.eos_token_ids, scheduler)
        requests = [req(f"r{i}", prompt, max_tokens=16) for i, prompt in enumerate(prompts)]
        return generated_ids(core, requests, together=True)

    assert generate(64) == generate(0)
