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
from inference_service.engine.types import GenerationRequest, SamplingParams, StoppingParams
from inference_service.server.app import STALL_SECONDS, InferenceServer
from inference_service.server.settings import ServiceSettings
from tests.engine.fakes import EOS, FakeRunner, FakeTokenizer

pytestmark = pytest.mark.anyio


class LoopKiller(BaseException):
    """Not an Exception: escapes the per-step handler like a real bug in the loop itself would."""


def server_for(engine: Any) -> InferenceServer:
    model = SimpleNamespace(engine=engine, execution_provider="CPUExecutionProvider", precision="test")
    return InferenceServer(ServiceSettings(port=0), {"m": cast(Any, model)})


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

        runner.forward = die  # type: ignore[method-assign]
        request = GenerationRequest("x", [], SamplingParams(temperature=0.0), StoppingParams(max_tokens=3))
        with pytest.raises(EngineUnavailableError):
            async for _ in engine.generate(PromptInput(text="ab"), request):
                pass
        assert not engine.is_alive
        assert not server._ready()
    finally:
        await asyncio.wait_for(engine.stop(), 5)


async def test_stalled_loop_with_work_and_draining_are_not_ready() -> None:
    engine = SimpleNamespace(
        is_alive=True, core=SimpleNamespace(has_work=False), last_step_time=time.monotonic(), context_length=64
    )
    server = server_for(engine)
    assert server._ready()
    engine.core.has_work = True
    engine.last_step_time = time.monotonic() - STALL_SECONDS - 1
    assert not server._ready()  # work pending, no step for too long
    engine.core.has_work = False
    assert server._ready()  # idle for long is fine
    server._draining = True
    assert not server._ready()
