"""KV budget: admission waits for tokens to fit, the newest sequence is preempted and recomputed, memory is freed."""

from __future__ import annotations

import dataclasses
import mmap
import time
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from inference_service.engine.core import EngineCore
from inference_service.engine.kv_cache import KVCache, KVLayout
from inference_service.engine.loader import load_runner
from inference_service.engine.runner import RunnerOptions
from inference_service.engine.scheduler import SchedulerConfig
from inference_service.engine.tokenizer import Tokenizer
from inference_service.engine.types import ChatMessage, FinishReason
from inference_service.models.folder import load_model_config
from tests.engine.fakes import EOS, FakeRunner, FakeTokenizer, generated_ids, req, run, text


def make_core(budget: int, num_slots: int = 4, capacity: int = 16, **config: Any) -> tuple[EngineCore, FakeRunner]:
    runner = FakeRunner(num_slots, capacity, budget_tokens=budget)
    return EngineCore(runner, cast(Any, FakeTokenizer()), (EOS,), SchedulerConfig(**config)), runner


def expected(prompt: list[int], count: int) -> str:
    return "".join(chr(ord("a") + (prompt[-1] + i) % 32) for i in range(1, count + 1))


def test_budget_is_at_least_one_full_slot_and_at_most_every_slot() -> None:
    layout = KVLayout(num_layers=1, num_slots=4, kv_heads=1, slot_capacity=16, head_size=1)
    assert KVCache(layout, budget_tokens=5).budget_tokens == 16
    assert KVCache(layout, budget_tokens=40).budget_tokens == 40
    assert KVCache(layout, budget_tokens=1000).budget_tokens == 64
    assert KVCache(layout).budget_tokens == 64


def test_admission_waits_until_tokens_fit() -> None:
    core, _ = make_core(budget=20)
    prompts = {rid: [i + 1] * 8 for i, rid in enumerate("abc")}
    for rid, prompt in prompts.items():
        core.add_request(req(rid, prompt, max_tokens=2))
    first = core.step().outputs
    load = core.load()
    # a: 8 tokens; b: 8 + 8 + 2 (headroom) ≤ 20; c would need 16 + 8 + 3 > 20
    assert (load.running_sequences, load.waiting_requests, load.kv_tokens_total) == (2, 1, 20)
    outs = run(core)
    for out in first:
        outs[(out.request_id, out.index)].insert(0, out)
    for rid, prompt in prompts.items():
        assert text(outs[(rid, 0)]) == expected(prompt, 2)
    assert core.scheduler.num_preemptions == 0


def test_newest_sequence_is_preempted_and_recomputed_without_losing_output() -> None:
    core, runner = make_core(budget=16, num_slots=2)
    core.add_request(req("old", [1, 2, 3, 4], max_tokens=10))
    core.add_request(req("new", [10, 11, 12, 13], max_tokens=10))
    outs = run(core)
    assert core.scheduler.num_preemptions >= 1
    assert text(outs[("old", 0)]) == expected([4], 10)
    assert text(outs[("new", 0)]) == expected([13], 10)  # every token once, in order
    for key in (("old", 0), ("new", 0)):
        assert [o.finish_reason for o in outs[key]].count(FinishReason.MAX_TOKENS) == 1
        assert outs[key][-1].completion_tokens == 10
    # the preempted sequence came back as one prefill of its prompt plus what it had generated
    assert any(seq > 4 for _, batch, seq in runner.calls if batch == 1)
    assert runner.kv.num_free == 2


def test_running_tokens_never_exceed_the_budget() -> None:
    core, _ = make_core(budget=24, num_slots=4)
    for i in range(6):
        core.add_request(req(f"r{i}", [i + 1] * 3, max_tokens=9))
    peak = 0
    while core.has_work:
        core.step()
        peak = max(peak, core.scheduler.running_tokens)
        assert core.load().kv_tokens_used <= 24
    assert peak <= 24 + core.runner.kv.layout.num_slots  # tokens being computed this step included


def test_preempted_sequence_is_not_expired_by_the_queue_wait_limit() -> None:
    core, _ = make_core(budget=16, num_slots=2, max_queue_wait_s=0.05)
    now = time.monotonic()
    core.add_request(req("old", [1, 2, 3, 4], max_tokens=10, arrival_time=now))
    core.add_request(req("new", [10, 11, 12, 13], max_tokens=10, arrival_time=now))
    outputs, failures = [], []
    while core.has_work:
        result = core.step()
        outputs += result.outputs
        failures += result.failures
        if core.scheduler.num_preemptions and core.scheduler.waiting:
            time.sleep(0.06)  # the preempted one now waits past the limit: it must not fail
    assert core.scheduler.num_preemptions >= 1
    assert failures == []
    assert sum(o.finish_reason is FinishReason.MAX_TOKENS for o in outputs) == 2


def test_aborting_a_preempted_request_removes_it() -> None:
    core, _ = make_core(budget=16, num_slots=2)
    core.add_request(req("old", [1, 2, 3, 4], max_tokens=10))
    core.add_request(req("new", [10, 11, 12, 13], max_tokens=10))
    while not core.scheduler.num_preemptions:
        core.step()
    cancelled = core.abort_request("new")
    assert [o.finish_reason for o in cancelled] == [FinishReason.CANCELLED]
    assert not core.scheduler.waiting
    run(core)
    assert core.runner.kv.num_free == 2


def test_freed_slot_pages_are_handed_back() -> None:
    capacity = mmap.PAGESIZE // 4  # one page per slot and buffer
    kv = KVCache(KVLayout(num_layers=2, num_slots=2, kv_heads=1, slot_capacity=capacity, head_size=1))
    slots = [kv.allocate(), kv.allocate()]
    values = np.ones((2, 2, 1, capacity, 1), np.float32)
    for slot in slots:
        kv.write(slot, values)
    kv.free(slots[0])
    assert not kv.read(slots[0], capacity).any()  # released: reads as zeros
    assert kv.read(slots[1], capacity).all()  # the neighbour is untouched


@pytest.mark.model
@pytest.mark.parametrize("folder_fixture", ["model_dir", "model_dir_fp16"])
def test_real_model_output_is_unchanged_by_preemption(folder_fixture: str, request: pytest.FixtureRequest) -> None:
    """Two greedy chats through a 64-token budget: the newer one is preempted, recomputed, and says the same
    (fp32 KV and fp16 KV)."""
    model_dir = Path(request.getfixturevalue(folder_fixture))
    config = load_model_config(model_dir)
    tokenizer = Tokenizer.from_dir(model_dir)
    prompts = [
        tokenizer.encode(tokenizer.apply_chat_template([ChatMessage("system", "Be kind."), ChatMessage("user", q)]))
        for q in ("Write a poem about the sea.", "Explain how plants grow.")
    ]
    assert 2 * max(len(p) for p in prompts) + 2 < 64  # both are admitted; their answers outgrow the budget

    def generate(budget_mib: int, together: bool) -> tuple[list[list[int]], int]:
        # the 4-bit graph for every step (no dense twin): equal rows → equal numerics, alone or batched
        options = RunnerOptions(device="cpu", num_slots=2, slot_capacity=64, dense_min_rows=0)
        runner = load_runner(config, dataclasses.replace(options, kv_cache_mib=budget_mib))
        core = EngineCore(runner, tokenizer, config.eos_token_ids, SchedulerConfig())
        requests = [req(f"r{i}", prompt, max_tokens=64 - len(prompt) - 1) for i, prompt in enumerate(prompts)]
        return generated_ids(core, requests, together), core.scheduler.num_preemptions

    alone, _ = generate(0, together=False)
    preempted, preemptions = generate(1, together=True)  # 1 MiB → the minimum: one 64-token slot for both
    assert preemptions >= 1
    assert preempted == alone
