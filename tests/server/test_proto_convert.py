"""gRPC messages ⇄ engine types: defaults, absent optionals, range checks."""

from __future__ import annotations

from typing import Any, cast

import pytest

from inference_service.api.v1 import generation_pb2 as pb
from inference_service.engine.async_engine import AsyncEngine
from inference_service.engine.core import EngineCore
from inference_service.engine.errors import InvalidRequestError
from inference_service.engine.scheduler import SchedulerConfig
from inference_service.engine.types import FinishReason
from inference_service.models.folder import SearchDefaults
from inference_service.server import proto_convert
from tests.engine.fakes import EOS, FakeRunner, FakeTokenizer

DEFAULTS = SearchDefaults(temperature=0.2, top_p=0.9, top_k=50)


def test_absent_sampling_fields_take_model_defaults() -> None:
    req = proto_convert.generation_params(pb.GenerateRequest(prompt="x"), DEFAULTS)
    assert (req.sampling.temperature, req.sampling.top_p, req.sampling.top_k) == (0.2, 0.9, 50)
    assert req.sampling.seed is None
    assert req.stopping.max_tokens is None
    assert req.n == 1


def test_explicit_zero_is_not_absent() -> None:
    sampling = pb.SamplingParams(temperature=0.0, top_k=0, seed=0)
    req = proto_convert.generation_params(pb.GenerateRequest(prompt="x", sampling=sampling), DEFAULTS)
    assert req.sampling.temperature == 0.0 and req.sampling.greedy
    assert req.sampling.top_k == 0
    assert req.sampling.seed == 0


def test_all_fields_carried() -> None:
    req = proto_convert.generation_params(
        pb.GenerateRequest(
            prompt="x",
            n=3,
            sampling=pb.SamplingParams(
                top_p=0.5,
                min_p=0.1,
                frequency_penalty=1,
                presence_penalty=-1,
                repetition_penalty=1.2,
                logit_bias={5: -100},
            ),
            stopping=pb.StoppingCriteria(max_tokens=7, stop=["a", "b"], stop_token_ids=[9], ignore_eos=True),
            output=pb.OutputOptions(top_logprobs=3),
        ),
        DEFAULTS,
    )
    assert req.n == 3
    assert (req.sampling.top_p, req.sampling.min_p, req.sampling.logit_bias) == (0.5, pytest.approx(0.1), {5: -100.0})
    assert (req.sampling.frequency_penalty, req.sampling.presence_penalty) == (1.0, -1.0)
    assert req.stopping.max_tokens == 7 and req.stopping.stop == ("a", "b") and req.stopping.stop_token_ids == (9,)
    assert req.stopping.ignore_eos
    assert req.output.logprobs and req.output.top_logprobs == 3  # top_logprobs implies logprobs


@pytest.mark.parametrize(
    ("request_", "param"),
    [
        (pb.GenerateRequest(prompt="x", sampling=pb.SamplingParams(temperature=-0.1)), "temperature"),
        (pb.GenerateRequest(prompt="x", sampling=pb.SamplingParams(temperature=float("nan"))), "temperature"),
        (pb.GenerateRequest(prompt="x", sampling=pb.SamplingParams(top_p=1.5)), "top_p"),
        (pb.GenerateRequest(prompt="x", sampling=pb.SamplingParams(min_p=2)), "min_p"),
        (pb.GenerateRequest(prompt="x", sampling=pb.SamplingParams(presence_penalty=3)), "presence_penalty"),
        (pb.GenerateRequest(prompt="x", sampling=pb.SamplingParams(repetition_penalty=0)), "repetition_penalty"),
        (pb.GenerateRequest(prompt="x", sampling=pb.SamplingParams(logit_bias={1: 101})), "logit_bias[1]"),
        (pb.GenerateRequest(prompt="x", stopping=pb.StoppingCriteria(max_tokens=0)), "max_tokens"),
        (pb.GenerateRequest(prompt="x", stopping=pb.StoppingCriteria(stop=[""])), "stop"),
        (pb.GenerateRequest(prompt="x", stopping=pb.StoppingCriteria(stop=["s"] * 17)), "stop"),
        (pb.GenerateRequest(prompt="x", output=pb.OutputOptions(top_logprobs=21)), "top_logprobs"),
        (pb.GenerateRequest(prompt="x", n=129), "n"),
    ],
)
def test_out_of_range_values_name_the_parameter(request_: pb.GenerateRequest, param: str) -> None:
    with pytest.raises(InvalidRequestError) as err:
        proto_convert.generation_params(request_, DEFAULTS)
    assert err.value.param == param


@pytest.mark.parametrize("value", ["", "abc-123_x.y:z", "a" * 128])
def test_request_ids_accepted(value: str) -> None:
    assert proto_convert.request_id(value)


@pytest.mark.parametrize("value", ["a b", "line\nbreak", "a" * 129, "é"])
def test_request_ids_rejected(value: str) -> None:
    with pytest.raises(InvalidRequestError):
        proto_convert.request_id(value)


def test_prompt_input_kinds_and_errors() -> None:
    chat = pb.GenerateRequest(chat=pb.ChatInput(messages=[pb.ChatMessage(role="user", content="hi", name="n")]))
    prompt = proto_convert.prompt_input(chat)
    assert prompt.messages is not None and prompt.messages[0].name == "n" and prompt.add_generation_prompt
    assert proto_convert.prompt_input(pb.GenerateRequest(prompt="p")).text == "p"
    assert proto_convert.prompt_input(pb.GenerateRequest(token_ids=pb.TokenIds(ids=[1, 2]))).token_ids == (1, 2)
    for bad, param in (
        (pb.GenerateRequest(), "input"),
        (
            pb.GenerateRequest(chat=pb.ChatInput(messages=[pb.ChatMessage(role="user"), pb.ChatMessage(role="robot")])),
            "messages[1].role",
        ),
        (
            pb.GenerateRequest(chat=pb.ChatInput(messages=[pb.ChatMessage(role="user"), pb.ChatMessage(role="tool")])),
            "messages[1].tool_call_id",
        ),
    ):
        with pytest.raises(InvalidRequestError) as err:
            proto_convert.prompt_input(bad)
        assert err.value.param == param


@pytest.mark.parametrize(
    ("request_", "param"),
    [
        (pb.GenerateRequest(prompt=""), "prompt"),
        (pb.GenerateRequest(chat=pb.ChatInput()), "messages"),
        (pb.GenerateRequest(token_ids=pb.TokenIds()), "token_ids"),
    ],
)
def test_empty_inputs_are_refused_when_rendered(request_: pb.GenerateRequest, param: str) -> None:
    """The gRPC path still refuses an empty prompt of each kind: the one check is the engine's render."""
    runner, tokenizer = FakeRunner(), cast(Any, FakeTokenizer())
    engine = AsyncEngine(EngineCore(runner, tokenizer, (EOS,), SchedulerConfig()), tokenizer, 64)
    prompt = proto_convert.prompt_input(request_)
    with pytest.raises(InvalidRequestError) as err:
        engine.render(prompt)
    assert err.value.param == param and str(err.value) == f"{param} must not be empty"


def test_final_output_becomes_chunk_then_completion() -> None:
    from inference_service.engine.types import ChoiceOutput, Timing

    out = ChoiceOutput(
        "r",
        1,
        "end",
        (7,),
        finish_reason=FinishReason.MAX_TOKENS,
        prompt_tokens=3,
        completion_tokens=4,
        timing=Timing(0.1, 0.2, 0.3),
    )
    chunk, complete = proto_convert.responses(out, return_token_ids=True)
    assert chunk.request_id == complete.request_id == "r"
    assert chunk.index == 1 and chunk.chunk.text == "end" and list(chunk.chunk.token_ids) == [7]
    assert complete.complete.finish_reason == pb.FINISH_REASON_MAX_TOKENS
    assert (complete.complete.usage.prompt_tokens, complete.complete.usage.completion_tokens) == (3, 4)
    empty = ChoiceOutput("r", 0, "", (8,))
    assert proto_convert.responses(empty, return_token_ids=False) == []  # held-back text: nothing to send
