"""Warm-up through the engine core with the fake runner."""

from __future__ import annotations

from typing import Any, cast

from inference_service.engine.core import EngineCore
from inference_service.engine.loader import warm_up
from inference_service.engine.scheduler import SchedulerConfig
from inference_service.engine.types import StepResult
from tests.engine.fakes import EOS, FakeRunner, FakeTokenizer, make_core


def test_warm_up_runs_a_prefill_and_a_decode_step_and_leaves_nothing_behind() -> None:
    core, runner = make_core()
    warm_up(core)
    assert runner.calls == [(0, 1, 2), (0, 1, 1)]  # (first_slot, batch, seq): a two-token prefill, one decode
    assert (
        not core.has_work and core.runner.kv.num_free == 4 and core.step() == StepResult([], [])
    )  # nothing left to report


def test_warm_up_is_not_expired_by_a_queue_wait_limit() -> None:
    runner = FakeRunner()
    core = EngineCore(runner, cast(Any, FakeTokenizer()), (EOS,), SchedulerConfig(max_queue_wait_s=1.0))
    warm_up(core)
    assert len(runner.calls) == 2


def test_warm_up_raises_what_the_model_raises() -> None:
    core, runner = make_core()
    runner.fail_next = True
    try:
        warm_up(core)
    except RuntimeError as e:
        assert "injected failure" in str(e)
    else:
        raise AssertionError("warm_up did not raise")
