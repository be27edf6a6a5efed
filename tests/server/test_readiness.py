"""Readiness follows the engine loop: NOT ready when it died, stalls with work pending, or the server drains."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any, cast

import pytest

from inference_service.engine.async_engine import AsyncEngine, PromptInput
from inference_service.engine.core import EngineCore
from inference_service.engine.errors import EngineUnavailableError
from inference_service.engine.scheduler import SchedulerConfig
from inference_service.engine.types import GenerationParams, SamplingParams, ServerLoad, StoppingParams
from inference_service.server.app import STALL_SECONDS
from tests.engine.fakes import EOS, FakeRunner, FakeTokenizer
from tests.server.fakes import server_for

pytestmark = pytest.mark.anyio


class LoopKiller(BaseException):
    """Not an Exception: escapes the per-step handler like a real bug in the loop itself would."""


async def test_ready_while_the_loop_runs_and_not_after_it_dies() -> None:
    runner = FakeRunner()
    tokenizer = cast(Any, FakeTokenizer())
    engine = AsyncEngine(EngineCore(runner, tokenizer, (EOS,), SchedulerConfig()), tokenizer, 64)
    server = server_for(engine)
    engine.start()
    try:
        assert server._ready()

        def die(*args: object) -> None:
            raise LoopKiller

        runner.forward = die  # type: ignore[method-assign, assignment]
        params = GenerationParams(SamplingParams(temperature=0.0), StoppingParams(max_tokens=3))
        with pytest.raises(EngineUnavailableError):
            async for _ in engine.generate(PromptInput(text="ab"), params, "x"):
                pass
        assert not engine.is_alive
        assert not server._ready()
    finally:
        await asyncio.wait_for(engine.stop(), 5)


def snapshot(has_work: bool, published_at: float) -> ServerLoad:
    return ServerLoad(0, 0, 0, 64, 4, 0, 0, 0, 0, has_work=has_work, published_at=published_at)


async def test_stalled_loop_with_work_and_draining_are_not_ready() -> None:
    """Readiness reads the engine's published snapshot, never the core (which belongs to the engine thread)."""
    engine = SimpleNamespace(is_alive=True, context_length=64, latest=snapshot(False, time.monotonic()))
    engine.load = lambda: engine.latest
    server = server_for(engine)
    assert server._ready()
    engine.latest = snapshot(True, time.monotonic() - STALL_SECONDS - 1)
    assert not server._ready()  # work pending, no snapshot for too long
    engine.latest = snapshot(True, time.monotonic())
    assert server._ready()  # work pending, stepping
    engine.latest = snapshot(False, time.monotonic() - STALL_SECONDS - 1)
    assert server._ready()  # idle for long is fine
    server._draining = True
    assert not server._ready()


async def test_published_snapshot_carries_counters_and_work() -> None:
    """What the metrics and readiness read: published by the engine thread before and after each step."""
    runner = FakeRunner(num_slots=1)
    runner.delay = 0.01
    tokenizer = cast(Any, FakeTokenizer())
    core = EngineCore(runner, tokenizer, (EOS,), SchedulerConfig())
    engine = AsyncEngine(core, tokenizer, 64)
    before = engine.load()
    assert not before.has_work and (before.preemptions, before.prefix_cache_hit_tokens) == (0, 0)
    engine.start()
    try:
        params = GenerationParams(SamplingParams(temperature=0.0), StoppingParams(max_tokens=60))
        stream = engine.generate(PromptInput(text="ab"), params, "busy")
        await anext(stream)
        during = engine.load()
        assert during.has_work and during.running_sequences == 1 and during.published_at > before.published_at
        assert not during.stalled(time.monotonic(), STALL_SECONDS)
        async for _ in stream:
            pass
        for _ in range(100):
            if not engine.load().has_work:
                break
            await asyncio.sleep(0.01)
        assert not engine.load().has_work and engine.load().running_sequences == 0
    finally:
        await asyncio.wait_for(engine.stop(), 5)
