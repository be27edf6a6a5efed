"""The inference service over real gRPC with the real default model."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from inference_service.api.v1 import generation_pb2 as pb
from inference_service.api.v1 import generation_pb2_grpc, model_pb2, model_pb2_grpc
from tests.conftest import DEVICE
from tests.e2e.conftest import MODEL_ID, Stack

pytestmark = pytest.mark.e2e
FRANCE = [pb.ChatMessage(role="user", content="What is the capital of France?")]


@pytest.fixture(scope="module")
def channel(stack: Stack) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(stack.grpc_target) as ch:
        yield ch


@pytest.fixture(scope="module")
def gen(channel: grpc.Channel) -> generation_pb2_grpc.GenerationServiceStub:
    return generation_pb2_grpc.GenerationServiceStub(channel)


@pytest.fixture(scope="module")
def models(channel: grpc.Channel) -> model_pb2_grpc.ModelServiceStub:
    return model_pb2_grpc.ModelServiceStub(channel)


def request(messages: list[pb.ChatMessage] = FRANCE, **kw: Any) -> pb.GenerateRequest:
    sampling = kw.pop("sampling", pb.SamplingParams(temperature=0.0))
    stopping = kw.pop("stopping", pb.StoppingCriteria(max_tokens=48))
    return pb.GenerateRequest(
        model=MODEL_ID, chat=pb.ChatInput(messages=messages), sampling=sampling, stopping=stopping, **kw
    )


def collect(gen: generation_pb2_grpc.GenerationServiceStub, req: pb.GenerateRequest) -> dict[int, dict]:
    out: dict[int, dict] = {}
    for resp in gen.Generate(req, timeout=120):
        choice = out.setdefault(resp.index, {"text": "", "chunks": 0, "ids": [], "complete": None, "logprobs": []})
        if resp.HasField("chunk"):
            choice["text"] += resp.chunk.text
            choice["chunks"] += 1
            choice["ids"] += list(resp.chunk.token_ids)
            choice["logprobs"] += list(resp.chunk.logprobs)
        else:
            assert choice["complete"] is None, "one completion per choice"
            choice["complete"] = resp.complete
    return out


def test_greedy_answer_mentions_paris_and_counts_usage(gen: generation_pb2_grpc.GenerationServiceStub) -> None:
    out = collect(gen, request(output=pb.OutputOptions(return_token_ids=True)))
    choice = out[0]
    assert "Paris" in choice["text"]
    complete = choice["complete"]
    assert complete.finish_reason == pb.FINISH_REASON_EOS
    assert complete.usage.completion_tokens == len(choice["ids"])
    tokenized = gen.Tokenize(pb.TokenizeRequest(model=MODEL_ID, chat=pb.ChatInput(messages=FRANCE)))
    assert complete.usage.prompt_tokens == len(tokenized.token_ids)
    assert tokenized.text.startswith("<|im_start|>system\n")
    assert complete.timing.time_to_first_token_seconds <= complete.timing.total_seconds
    assert "\ufffd" not in choice["text"]


def test_greedy_is_deterministic_and_streams_whole_text(gen: generation_pb2_grpc.GenerationServiceStub) -> None:
    msgs = [pb.ChatMessage(role="user", content="Write one sentence about the sea.")]
    first = collect(gen, request(msgs))[0]
    second = collect(gen, request(msgs))[0]
    assert first["text"] == second["text"]
    assert first["chunks"] > 3  # streamed in pieces, not at the end


def test_max_tokens_finishes_with_length(gen: generation_pb2_grpc.GenerationServiceStub) -> None:
    out = collect(gen, request(stopping=pb.StoppingCriteria(max_tokens=5)))[0]
    assert out["complete"].finish_reason == pb.FINISH_REASON_MAX_TOKENS
    assert out["complete"].usage.completion_tokens == 5


def test_stop_string_is_never_emitted(gen: generation_pb2_grpc.GenerationServiceStub) -> None:
    full = collect(gen, request())[0]["text"]
    stop = "Paris"
    assert stop in full
    out = collect(gen, request(stopping=pb.StoppingCriteria(max_tokens=48, stop=[stop, "zzz"])))[0]
    assert out["complete"].finish_reason == pb.FINISH_REASON_STOP_SEQUENCE
    assert out["complete"].matched_stop == stop
    assert out["text"] == full[: full.index(stop)]
    assert "Par" not in out["text"][len(full[: full.index(stop)]) - 3 :]


def test_n_choices_seeded_sampling(gen: generation_pb2_grpc.GenerationServiceStub) -> None:
    req = request(
        sampling=pb.SamplingParams(temperature=1.0, seed=1234), n=3, stopping=pb.StoppingCriteria(max_tokens=16)
    )
    first, second = collect(gen, req), collect(gen, req)
    assert sorted(first) == [0, 1, 2]
    assert all(first[i]["complete"] is not None for i in range(3))
    assert [first[i]["text"] for i in range(3)] == [second[i]["text"] for i in range(3)]
    assert len({first[i]["text"] for i in range(3)}) > 1


def test_logprobs(gen: generation_pb2_grpc.GenerationServiceStub) -> None:
    out = collect(
        gen, request(output=pb.OutputOptions(logprobs=True, top_logprobs=3), stopping=pb.StoppingCriteria(max_tokens=6))
    )[0]
    assert len(out["logprobs"]) == 6
    for lp in out["logprobs"]:
        assert lp.logprob <= 0
        assert len(lp.top_logprobs) == 3
        assert lp.top_logprobs[0].token_id == lp.token_id  # greedy picks the most likely token


def test_concurrent_requests_match_sequential(gen: generation_pb2_grpc.GenerationServiceStub) -> None:
    prompts = ["Name a color.", "What is 2+2?", "Say hello in French.", "Name a planet."]
    sequential = [collect(gen, request([pb.ChatMessage(role="user", content=p)]))[0]["text"] for p in prompts]
    results: dict[int, str] = {}

    def run(i: int) -> None:
        results[i] = collect(gen, request([pb.ChatMessage(role="user", content=prompts[i])]))[0]["text"]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[i] for i in range(len(prompts))] == sequential


def _wait_idle(models: model_pb2_grpc.ModelServiceStub, timeout: float = 5.0) -> model_pb2.GetServerLoadResponse:
    deadline = time.monotonic() + timeout
    while True:
        load = models.GetServerLoad(model_pb2.GetServerLoadRequest())
        if (load.running_sequences == 0 and load.waiting_requests == 0) or time.monotonic() > deadline:
            return load
        time.sleep(0.05)


def test_cancelled_stream_frees_its_sequence(
    gen: generation_pb2_grpc.GenerationServiceStub, models: model_pb2_grpc.ModelServiceStub
) -> None:
    call = gen.Generate(request(stopping=pb.StoppingCriteria(max_tokens=1000, ignore_eos=True)), timeout=120)
    for i, _ in enumerate(call):
        if i == 3:
            break
    assert models.GetServerLoad(model_pb2.GetServerLoadRequest()).running_sequences >= 1
    call.cancel()
    load = _wait_idle(models)
    assert load.running_sequences == 0
    assert load.kv_tokens_used == 0


@pytest.mark.parametrize(
    ("req", "code"),
    [
        (pb.GenerateRequest(model="no-such-model", prompt="hi"), grpc.StatusCode.NOT_FOUND),
        (pb.GenerateRequest(model=MODEL_ID, prompt="word " * 3000), grpc.StatusCode.INVALID_ARGUMENT),
        (
            pb.GenerateRequest(model=MODEL_ID, prompt="hi", stopping=pb.StoppingCriteria(max_tokens=5000)),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            pb.GenerateRequest(model=MODEL_ID, prompt="hi", sampling=pb.SamplingParams(temperature=-1)),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            pb.GenerateRequest(model=MODEL_ID, prompt="hi", sampling=pb.SamplingParams(top_p=0)),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            pb.GenerateRequest(model=MODEL_ID, prompt="hi", stopping=pb.StoppingCriteria(max_tokens=0)),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (pb.GenerateRequest(model=MODEL_ID, prompt="hi", n=1000), grpc.StatusCode.INVALID_ARGUMENT),
        (
            pb.GenerateRequest(model=MODEL_ID, prompt="hi", output=pb.OutputOptions(top_logprobs=21)),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (pb.GenerateRequest(model=MODEL_ID, chat=pb.ChatInput()), grpc.StatusCode.INVALID_ARGUMENT),
        (
            pb.GenerateRequest(model=MODEL_ID, chat=pb.ChatInput(messages=[pb.ChatMessage(role="robot", content="x")])),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (pb.GenerateRequest(model=MODEL_ID, token_ids=pb.TokenIds(ids=[10**6])), grpc.StatusCode.INVALID_ARGUMENT),
        (pb.GenerateRequest(model=MODEL_ID), grpc.StatusCode.INVALID_ARGUMENT),
        (
            pb.GenerateRequest(model=MODEL_ID, prompt="hi", request_id="a\nfake log line"),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
    ],
    ids=[
        "unknown-model",
        "prompt-too-long",
        "max-tokens-over-context",
        "negative-temperature",
        "top-p-zero",
        "max-tokens-zero",
        "n-too-large",
        "top-logprobs-21",
        "empty-messages",
        "bad-role",
        "token-out-of-vocab",
        "no-input",
        "request-id-with-newline",
    ],
)
def test_bad_requests_get_clear_statuses(
    gen: generation_pb2_grpc.GenerationServiceStub, req: pb.GenerateRequest, code: grpc.StatusCode
) -> None:
    with pytest.raises(grpc.RpcError) as err:
        list(gen.Generate(req, timeout=30))
    assert err.value.code() == code
    assert err.value.details()
    # still serving
    assert "Paris" in collect(gen, request())[0]["text"]


def test_model_service(models: model_pb2_grpc.ModelServiceStub) -> None:
    listed = models.ListModels(model_pb2.ListModelsRequest())
    assert [m.id for m in listed.models] == [MODEL_ID]
    info = models.GetModelInfo(model_pb2.GetModelInfoRequest(model=MODEL_ID)).model
    assert info.vocab_size == 49152
    assert list(info.eos_token_ids) == [2]
    assert info.execution_provider == ("CUDAExecutionProvider" if DEVICE == "cuda" else "CPUExecutionProvider")
    precision = (
        "fp16 (GGUF 4-bit codes and f16 scales kept, fp32 LM head)" if DEVICE == "cuda" else "fp32 (GGUF weights exact)"
    )
    assert info.precision == precision
    assert len(info.fingerprint) == 16
    with pytest.raises(grpc.RpcError) as err:
        models.GetModelInfo(model_pb2.GetModelInfoRequest(model="nope"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_services(channel: grpc.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {s.name for r in replies for s in r.list_services_response.service}
    assert {
        "inference_service.api.v1.GenerationService",
        "inference_service.api.v1.ModelService",
        "grpc.health.v1.Health",
    } <= names
