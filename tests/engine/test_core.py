"""Engine core and scheduler with a fake runner: continuous batching, chunked prefill, stops, aborts."""

from __future__ import annotations

import time
from typing import Any, cast

from inference_service.engine.core import EngineCore
from inference_service.engine.errors import InvalidRequestError
from inference_service.engine.scheduler import SchedulerConfig
from inference_service.engine.types import (
    ChoiceOutput,
    Failure,
    FinishReason,
    OutputParams,
    SamplingParams,
    StoppingParams,
)
from tests.engine.fakes import (
    EOS,
    FakeRunner,
    FakeTokenizer,
    ScriptGrammar,
    make_core,
    outcome,
    req,
    run,
    text,
)


def test_single_request_generates_until_max_tokens() -> None:
    core, _ = make_core()
    core.add_request(req("a", [1, 2, 3]))
    outs = run(core)[("a", 0)]
    assert text(outs) == "efghi"  # 3 → 4 (e) … 8 (i)
    last = outs[-1]
    assert last.finish_reason is FinishReason.MAX_TOKENS
    assert (last.prompt_tokens, last.completion_tokens) == (3, 5)
    assert core.runner.kv.num_free == 4


def test_prompt_alone_is_prefilled_in_one_pass() -> None:
    core, runner = make_core()
    core.add_request(req("a", [1, 2, 3, 4, 5], max_tokens=2))
    run(core)
    assert runner.calls == [(0, 1, 5), (0, 1, 1)]  # whole prompt, then one decode step


def test_concurrent_requests_share_decode_steps() -> None:
    core, runner = make_core()
    for rid, start in (("a", 1), ("b", 10), ("c", 20)):
        core.add_request(req(rid, [start, start + 1], max_tokens=6))
    outs = run(core)
    assert text(outs[("a", 0)]) == "defghi"
    assert text(outs[("b", 0)]) == "mnopqr"
    assert text(outs[("c", 0)]).startswith("w")
    decode_batches = [batch for first, batch, seq in runner.calls if seq == 1 and first == 0]
    assert max(decode_batches) == 3  # all three decoded in one forward pass
    assert len(runner.calls) < 3 * 7  # far fewer passes than running them one by one


def test_new_request_joins_running_batch_and_finished_leave() -> None:
    core, _ = make_core()
    core.add_request(req("a", [1], max_tokens=10))
    for _ in range(3):
        core.step()
    core.add_request(req("b", [5], max_tokens=2))
    seen: dict[str, list[ChoiceOutput]] = {}
    while core.has_work:
        for out in core.step().outputs:
            seen.setdefault(out.request_id, []).append(out)
        if "b" in seen and seen["b"][-1].finish_reason is not None and "b_done" not in seen:
            seen["b_done"] = []
            assert len(core.scheduler.running) == 1  # b left the step it finished
    assert text(seen["b"]) == "gh"
    assert len(text(seen["a"])) == 7  # a's first 3 tokens came before b joined


def test_long_prompt_is_chunked_under_the_token_budget() -> None:
    core, runner = make_core(capacity=256, max_batched_tokens=32)
    core.add_request(req("short", [3], max_tokens=20))
    first = core.step().outputs
    core.add_request(req("long", list(range(1, 31)) * 4, max_tokens=1))  # 120 tokens
    outs = run(core)
    assert all(seq <= 32 for _, _, seq in runner.calls)
    assert outs[("long", 0)][-1].completion_tokens == 1
    assert text(first + outs[("short", 0)]) == "efghijklmnopqrstuvwx"


def test_slots_limit_admission_and_are_reused() -> None:
    core, runner = make_core(num_slots=2)
    for i in range(5):
        core.add_request(req(f"r{i}", [i + 1], max_tokens=3))
    assert core.load().waiting_requests == 5
    core.step()
    assert core.load().running_sequences == 2
    assert core.load().waiting_requests == 3
    outs = run(core)
    assert len(outs) == 5
    assert max(first + batch for first, batch, _ in runner.calls) <= 2  # never beyond the two slots


def test_eos_and_stop_string_finish() -> None:
    core, _ = make_core()
    core.add_request(req("eos", [30], max_tokens=10))  # 30 → 31 (f) → 0 = EOS
    core.add_request(req("stop", [1], stopping=StoppingParams(max_tokens=10, stop=("fg",))))
    outs = run(core)
    assert outs[("eos", 0)][-1].finish_reason is FinishReason.EOS
    assert text(outs[("eos", 0)]) == chr(ord("a") + 31)
    stop_outs = outs[("stop", 0)]
    assert stop_outs[-1].finish_reason is FinishReason.STOP_SEQUENCE
    assert stop_outs[-1].matched_stop == "fg"
    assert text(stop_outs) == "cde"
    assert all("f" not in o.text for o in stop_outs)


def test_ignore_eos_and_stop_token_ids() -> None:
    core, _ = make_core()
    core.add_request(req("ignore", [30], stopping=StoppingParams(max_tokens=4, ignore_eos=True)))
    core.add_request(req("tok", [1], stopping=StoppingParams(max_tokens=10, stop_token_ids=(4,))))
    outs = run(core)
    assert outs[("ignore", 0)][-1].finish_reason is FinishReason.MAX_TOKENS
    assert outs[("ignore", 0)][-1].completion_tokens == 4
    assert outs[("tok", 0)][-1].finish_reason is FinishReason.STOP_TOKEN


def test_context_length_finish() -> None:
    core, _ = make_core(capacity=8)
    core.add_request(req("ctx", [1, 2, 3], max_tokens=None))
    outs = run(core)[("ctx", 0)]
    assert outs[-1].finish_reason is FinishReason.CONTEXT_LENGTH
    assert outs[-1].prompt_tokens + outs[-1].completion_tokens == 8


def test_n_choices_each_finish_once() -> None:
    core, _ = make_core()
    core.add_request(req("n", [1], max_tokens=3, n=3, sampling=SamplingParams(temperature=1.0, seed=3)))
    outs = run(core)
    assert sorted(index for _, index in outs) == [0, 1, 2]
    for key, items in outs.items():
        assert [o.finish_reason is not None for o in items].count(True) == 1, key


def test_abort_frees_slot_and_reports_cancelled() -> None:
    core, runner = make_core()
    core.add_request(req("a", [1], max_tokens=50))
    core.step()
    assert core.load().running_sequences == 1
    cancelled = core.abort_request("a")
    assert [o.finish_reason for o in cancelled] == [FinishReason.CANCELLED]
    assert core.load().running_sequences == 0
    assert runner.kv.num_free == 4
    assert not core.has_work


def test_logprobs_returned_when_asked() -> None:
    core, _ = make_core()
    core.add_request(req("lp", [1], max_tokens=2, output=OutputParams(logprobs=True, top_logprobs=2)))
    outs = run(core)[("lp", 0)]
    assert all(len(o.logprobs) == 1 for o in outs)
    first = outs[0].logprobs[0]
    assert first.token == "c"
    assert first.top[0].token_id == first.token_id
    assert first.logprob <= 0


def test_waiting_too_long_fails_with_queue_timeout() -> None:
    from inference_service.engine.errors import QueueTimeoutError

    runner = FakeRunner(num_slots=1)
    config = SchedulerConfig(max_queue_wait_s=0.5)
    core = EngineCore(runner, cast(Any, FakeTokenizer()), (EOS,), config)
    core.add_request(req("first", [1], max_tokens=3, arrival_time=time.monotonic() + 1000))  # never stale
    late = req("late", [2], max_tokens=3, arrival_time=0.0)  # arrived long ago: waited past the limit
    core.add_request(late)
    failures: list[Failure] = []
    outs = run(core, failures=failures)
    assert ("first", 0) in outs and ("late", 0) not in outs
    assert [(f.request_id, type(f.error)) for f in failures] == [("late", QueueTimeoutError)]  # reported once


def test_failure_in_one_sequence_spares_the_others() -> None:
    from inference_service.engine.errors import EngineInternalError

    core, runner = make_core()

    def hook(seq: Any) -> None:
        if seq.request.request_id == "bad" and seq.num_generated >= 1:
            raise RuntimeError("boom")

    core.fault_hook = hook
    core.add_request(req("good", [1], max_tokens=4))
    core.add_request(req("bad", [5], max_tokens=4))
    failures: list[Failure] = []
    outs = run(core, failures=failures)
    assert text(outs[("good", 0)]) == "cdef"
    assert outs[("good", 0)][-1].finish_reason is FinishReason.MAX_TOKENS
    assert [(f.request_id, type(f.error)) for f in failures] == [("bad", EngineInternalError)]
    assert runner.kv.num_free == 4


def test_fresh_prompts_in_consecutive_slots_prefill_in_one_padded_pass() -> None:
    core, runner = make_core()
    core.add_request(req("a", [1, 2, 3, 4, 5], max_tokens=2))
    core.add_request(req("b", [10, 11, 12, 13], max_tokens=2))
    core.add_request(req("c", [20, 21, 22, 23, 24], max_tokens=2))
    outs = run(core)
    assert runner.calls[0] == (0, 3, 5)  # one forward: 3 rows, right-padded to 5
    assert text(outs[("a", 0)]) == "gh"
    assert text(outs[("b", 0)]) == "op"  # its logits come from its own last token (13), not the padding
    assert text(outs[("c", 0)]) == "z" + chr(ord("a") + 26)  # 24 → 25 (z) → 26


def test_constrained_choices_follow_their_grammar_and_end_when_it_is_complete() -> None:
    core, _ = make_core()
    grammar = cast(Any, ScriptGrammar([5, 3, 9]))  # the model would say 2, 3, 4 after [1]: the mask decides
    core.add_request(req("done", [1], max_tokens=10, grammar=grammar, n=2))
    core.add_request(req("cut", [1], max_tokens=2, grammar=grammar))
    core.add_request(req("free", [1], max_tokens=3))
    core.add_request(req("sampled", [1], max_tokens=10, grammar=grammar, sampling=SamplingParams(top_k=3, seed=1)))
    outs = run(core)
    for index in (0, 1):
        done = outs[("done", index)]
        assert text(done) == "fdj" and done[-1].finish_reason is FinishReason.EOS and done[-1].completion_tokens == 3
    assert text(outs[("cut", 0)]) == "fd" and outs[("cut", 0)][-1].finish_reason is FinishReason.MAX_TOKENS
    assert text(outs[("free", 0)]) == "cde"  # an unconstrained row in the same steps is untouched
    assert text(outs[("sampled", 0)]) == "fdj"  # fewer allowed tokens than top_k: still only allowed ones


def test_a_grammar_that_fails_fails_only_its_request() -> None:
    core, _ = make_core()
    core.add_request(req("bad", [1], max_tokens=10, grammar=cast(Any, ScriptGrammar([5, 3, 9], fail_at=1))))
    core.add_request(req("good", [1], max_tokens=3))
    failures: list[Failure] = []
    outs = run(core, failures=failures)
    failed, error = failures[0].request_id, failures[0].error
    assert failed == "bad" and isinstance(error, InvalidRequestError) and "step fuel exhausted" in str(error)
    assert text(outs[("bad", 0)]) == "f"  # the token before the failure was sent
    assert text(outs[("good", 0)]) == "cde"


def test_a_prompt_prefilling_below_the_decoding_slots_stays_out_of_the_decode_pass() -> None:
    core, runner = make_core(max_batched_tokens=64)
    core.scheduler.config = SchedulerConfig(64, long_prefill_token_threshold=16)
    core.add_request(req("long", list(range(1, 31)) * 4, max_tokens=2))  # slot 0: 120 tokens, 16 a step
    core.step()
    core.add_request(req("short", [1, 2], max_tokens=4))  # slot 1: decodes while slot 0 still prefills
    outs = run(core)
    decode_passes = [(first, batch) for first, batch, seq in runner.calls if seq == 1]
    assert decode_passes and all(first == 1 for first, _ in decode_passes[:3])  # [1, 2): not slot 0
    plain, _ = make_core(max_batched_tokens=64)
    for request in (req("long", list(range(1, 31)) * 4, max_tokens=2), req("short", [1, 2], max_tokens=4)):
        plain.add_request(request)
    want = run(plain)
    assert [outcome(outs[k]) for k in sorted(outs)] == [outcome(want[k]) for k in sorted(want)]
