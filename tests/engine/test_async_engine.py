"""The asyncio front over a real engine thread and core, with the fake runner."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from inference_service.engine.async_engine import AsyncEngine, PromptInput
from inference_service.engine.core import EngineCore
from inference_service.engine.errors import ContextLengthExceededError, EngineInternalError, InvalidRequestError
from inference_service.engine.scheduler import SchedulerConfig
from inference_service.engine.types import ChatMessage, FinishReason, GenerationParams, SamplingParams, StoppingParams
from tests.engine.fakes import EOS, FakeRunner, FakeTokenizer

pytestmark = pytest.mark.anyio


def engine(capacity: int = 64) -> tuple[AsyncEngine, FakeRunner]:
    runner = FakeRunner(num_slots=4, capacity=capacity)
    tokenizer = cast(Any, FakeTokenizer())
    core = EngineCore(runner, tokenizer, (EOS,), SchedulerConfig())
    return AsyncEngine(core, tokenizer, context_length=capacity), runner


def params(max_tokens: int | None = 4) -> GenerationParams:
    stopping = StoppingParams(max_tokens=max_tokens, ignore_eos=max_tokens is None)
    return GenerationParams(SamplingParams(temperature=0.0), stopping)


async def collect(eng: AsyncEngine, prompt: str, rid: str, max_tokens: int | None = 4) -> str:
    text = ""
    async for out in eng.generate(PromptInput(text=prompt), params(max_tokens), rid):
        text += out.text
    return text


async def test_generate_streams_and_concurrent_requests_complete() -> None:
    eng, _ = engine()
    eng.start()
    try:
        results = await asyncio.gather(*(collect(eng, p, f"r{i}") for i, p in enumerate(["ab", "kl", "pq"])))
        assert results == ["cdef", "mnop", "rstu"]
        chat = PromptInput(messages=(ChatMessage("user", "b"),))
        outs = [o async for o in eng.generate(chat, params(2), "chat")]
        assert "".join(o.text for o in outs) == "cd"
        assert outs[-1].finish_reason is FinishReason.MAX_TOKENS
    finally:
        await eng.stop()


async def test_validation_errors_before_admission() -> None:
    eng, _ = engine(capacity=16)
    eng.start()
    try:
        with pytest.raises(ContextLengthExceededError):
            await collect(eng, "a" * 20, "long")
        with pytest.raises(ContextLengthExceededError):
            await collect(eng, "ab", "toomany", max_tokens=15)
        with pytest.raises(InvalidRequestError) as err:
            await collect(eng, "", "empty")
        assert err.value.param == "prompt"
        assert await collect(eng, "ab", "fine") == "cdef"
    finally:
        await eng.stop()


async def test_consumer_leaving_early_aborts_the_request() -> None:
    eng, runner = engine()
    runner.delay = 0.01
    eng.start()
    try:
        stream = eng.generate(PromptInput(text="a"), params(max_tokens=None), "early")
        async for _ in stream:
            break
        await stream.aclose()  # type: ignore[attr-defined]  # an async generator behind the AsyncIterator type
        for _ in range(100):
            if eng.load().running_sequences == 0 and runner.kv.num_free == 4:
                break
            await asyncio.sleep(0.01)
        assert runner.kv.num_free == 4
    finally:
        await eng.stop()


async def test_abort_ends_stream_with_cancelled() -> None:
    eng, runner = engine()
    runner.delay = 0.01
    eng.start()
    try:
        reasons = []

        async def consume() -> None:
            async for out in eng.generate(PromptInput(text="a"), params(max_tokens=None), "ab"):
                if out.finish_reason is not None:
                    reasons.append(out.finish_reason)

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.05)
        assert eng.abort("ab")
        await asyncio.wait_for(task, 5)
        assert reasons == [FinishReason.CANCELLED]
        assert not eng.abort("ab")
    finally:
        await eng.stop()


async def test_step_failure_fails_its_requests_and_engine_keeps_serving() -> None:
    eng, runner = engine()
    eng.start()
    try:
        runner.fail_next = True
        with pytest.raises(EngineInternalError):
            await collect(eng, "ab", "boom")
        assert eng.is_alive
        assert await collect(eng, "ab", "after") == "cdef"
    finally:
        await eng.stop()


async def test_step_failure_spares_the_requests_waiting_for_a_slot() -> None:
    """One slot: "running" is in the failing step, "waiting" is queued behind it and must still complete."""
    runner = FakeRunner(num_slots=1, capacity=64)
    runner.delay = 0.02
    tokenizer = cast(Any, FakeTokenizer())
    eng = AsyncEngine(EngineCore(runner, tokenizer, (EOS,), SchedulerConfig()), tokenizer, context_length=64)
    eng.start()
    try:
        running = asyncio.create_task(collect(eng, "ab", "running", max_tokens=20))
        while not runner.calls:  # "running" holds the slot
            await asyncio.sleep(0.005)
        waiting = asyncio.create_task(collect(eng, "ab", "waiting"))
        while eng.load().waiting_requests == 0:
            await asyncio.sleep(0.005)
        runner.fail_next = True
        with pytest.raises(EngineInternalError):
            await asyncio.wait_for(running, 5)
        assert await asyncio.wait_for(waiting, 5) == "cdef"
    finally:
        await eng.stop()


async def test_requests_beyond_slots_and_queue_are_refused_at_once() -> None:
    from inference_service.engine.errors import QueueFullError

    runner = FakeRunner(num_slots=1, capacity=64)
    runner.delay = 0.01
    tokenizer = cast(Any, FakeTokenizer())
    eng = AsyncEngine(EngineCore(runner, tokenizer, (EOS,), SchedulerConfig()), tokenizer, 64, max_waiting=1)
    assert eng.max_in_flight == 2
    eng.start()
    try:
        running = [asyncio.create_task(collect(eng, "a", f"r{i}", max_tokens=20)) for i in range(2)]
        await asyncio.sleep(0.02)
        with pytest.raises(QueueFullError):
            await collect(eng, "a", "third")
        assert [len(t) for t in await asyncio.gather(*running)] == [20, 20]
        assert await collect(eng, "ab", "after") == "cdef"
    finally:
        await eng.stop()


async def test_logit_bias_outside_the_vocabulary_is_rejected() -> None:
    eng, _ = engine()
    eng.start()
    try:
        bad = GenerationParams(SamplingParams(temperature=0.0, logit_bias={10**6: 5.0}), StoppingParams(4))
        with pytest.raises(InvalidRequestError) as err:
            async for _ in eng.generate(PromptInput(text="ab"), bad, "lb"):
                pass
        assert err.value.param == "logit_bias"
        assert await collect(eng, "ab", "fine") == "cdef"
    finally:
        await eng.stop()
