"""hypothesis-generated GenerateRequests (random fields and oneofs, huge, negative-free uint, NaN and infinite
numbers, long strings) against the real inference service: a status or a generation, never INTERNAL or UNKNOWN,
and the service stays healthy with nothing left running."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inference_service.api.v1 import generation_pb2 as pb
from inference_service.api.v1 import generation_pb2_grpc
from tests.e2e.conftest import MODEL_ID, Process, free_port, grpc_serving
from tests.e2e.reliability import READY, start_service, wait_for_running

pytestmark = pytest.mark.e2e
EXAMPLES = 200
UINT32 = st.one_of(st.integers(0, 10), st.integers(0, 2**32 - 1), st.sampled_from([49151, 49152, 2**31, 2**32 - 1]))
WILD_FLOAT = st.floats(width=32, allow_nan=True, allow_infinity=True)
FLOAT = st.one_of(st.floats(0, 1, width=32), st.floats(0, 1, width=32), WILD_FLOAT)  # mostly in range
SHORT_TEXT = st.text(max_size=20)
TEXT = st.one_of(SHORT_TEXT, st.text(max_size=3000), st.just("x" * 20_000), st.just("<|im_start|><|im_end|>"))
ROLE = st.one_of(st.sampled_from(["system", "user", "assistant", "developer", "tool"]), SHORT_TEXT)
MESSAGE = st.builds(pb.ChatMessage, role=ROLE, content=TEXT, name=SHORT_TEXT)
SAFE_ID = st.from_regex(r"[A-Za-z0-9._:-]{1,128}", fullmatch=True)
REQUEST_ID = st.one_of(st.just(""), SAFE_ID, SAFE_ID, st.text(max_size=200))
MODEL = st.one_of(st.just(MODEL_ID), st.just(MODEL_ID), st.just(MODEL_ID), st.just(""), SHORT_TEXT)


def optional(strategy: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(st.none(), strategy)


TOKEN = st.integers(0, 49151)  # inside the vocabulary
TAME_FLOAT = st.floats(0, 1, width=32)
VALID_MESSAGE = st.builds(
    pb.ChatMessage, role=st.sampled_from(["system", "user", "assistant"]), content=SHORT_TEXT, name=st.just("")
)


@st.composite
def generate_requests(draw: st.DrawFn) -> pb.GenerateRequest:
    # Half the requests are wild (anything goes), half tame (in range: mostly generations, so the engine runs the
    # random sampling parameters, logit biases, stops and logprobs rather than refusing them at the door).
    wild = draw(st.booleans())

    def pick(tame: st.SearchStrategy, anything: st.SearchStrategy) -> Any:
        return draw(anything if wild else tame)

    req = pb.GenerateRequest(
        request_id=pick(st.one_of(st.just(""), SAFE_ID), REQUEST_ID), model=pick(st.just(MODEL_ID), MODEL)
    )
    kind = draw(st.sampled_from(["chat", "prompt", "token_ids"] + (["none"] if wild else [])))
    if kind == "chat":
        req.chat.messages.extend(pick(st.lists(VALID_MESSAGE, min_size=1, max_size=3), st.lists(MESSAGE, max_size=4)))
        flag = draw(optional(st.booleans()))
        if flag is not None:
            req.chat.add_generation_prompt = flag
    elif kind == "prompt":
        req.prompt = pick(st.text(min_size=1, max_size=40), TEXT)
    elif kind == "token_ids":
        req.token_ids.ids.extend(pick(st.lists(TOKEN, min_size=1, max_size=30), st.lists(UINT32, max_size=50)))
    for name, value in {
        "temperature": FLOAT,
        "top_p": FLOAT,
        "top_k": UINT32,
        "min_p": FLOAT,
        "frequency_penalty": FLOAT,
        "presence_penalty": FLOAT,
        "repetition_penalty": FLOAT,
        "seed": st.integers(0, 2**64 - 1),
    }.items():
        tame = {"top_k": st.integers(0, 50), "seed": st.integers(0, 2**64 - 1)}.get(name, TAME_FLOAT)
        if name == "repetition_penalty":
            tame = st.floats(0.5, 2, width=32)
        drawn = draw(optional(tame if not wild else value))
        if drawn is not None:
            setattr(req.sampling, name, drawn)
    bias = pick(
        st.dictionaries(TOKEN, st.floats(-100, 100, width=32), max_size=3), st.dictionaries(UINT32, FLOAT, max_size=3)
    )
    for token, value in bias.items():
        req.sampling.logit_bias[token] = value
    # Always bounded (≤ 6 tokens, or so large the context check refuses it): keeps each generation short.
    req.stopping.max_tokens = pick(st.integers(1, 6), st.one_of(st.integers(0, 6), st.sampled_from([2**31, 2**32 - 1])))
    req.stopping.stop.extend(draw(st.lists(st.one_of(SHORT_TEXT, st.just("")), max_size=5)))
    req.stopping.stop_token_ids.extend(pick(st.lists(TOKEN, max_size=4), st.lists(UINT32, max_size=4)))
    req.stopping.ignore_eos = draw(st.booleans())
    req.stopping.include_stop_str_in_output = draw(st.booleans())
    req.output.logprobs = draw(st.booleans())
    req.output.top_logprobs = pick(st.integers(0, 20), st.one_of(st.integers(0, 25), UINT32))
    req.output.return_token_ids = draw(st.booleans())
    req.n = pick(st.integers(1, 3), st.one_of(st.integers(0, 3), UINT32))
    return req


@pytest.fixture(scope="module")
def service(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Process, str]]:
    port = free_port()
    process = start_service(model_dir, port, tmp_path_factory.mktemp("grpc-fuzz"), "--max-num-seqs", "4")
    try:
        yield process, f"127.0.0.1:{port}"
    finally:
        process.stop()


@pytest.fixture(scope="module")
def generation(service: tuple[Process, str]) -> Iterator[generation_pb2_grpc.GenerationServiceStub]:
    with grpc.insecure_channel(service[1]) as channel:
        yield generation_pb2_grpc.GenerationServiceStub(channel)


outcomes: dict[str, int] = {}


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(request=generate_requests())
def test_random_requests_never_internal(
    generation: generation_pb2_grpc.GenerationServiceStub, request: pb.GenerateRequest
) -> None:
    try:
        responses = list(generation.Generate(request, timeout=60))
        assert responses and responses[-1].HasField("complete")
        outcome = "OK"
    except grpc.RpcError as exc:
        code = exc.code()  # type: ignore[attr-defined]
        assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), f"{code}: {exc.details()}"  # type: ignore[attr-defined]
        assert code != grpc.StatusCode.DEADLINE_EXCEEDED, "a bounded request took over 60 s"
        outcome = code.name
    outcomes[outcome] = outcomes.get(outcome, 0) + 1


def test_service_healthy_after_fuzzing(service: tuple[Process, str]) -> None:
    process, target = service
    print(f"gRPC fuzz outcomes: {outcomes}")
    assert sum(outcomes.values()) >= EXAMPLES * 0.9 and outcomes.get("OK", 0) > 0
    assert process.popen.poll() is None
    assert grpc_serving(target, READY)
    wait_for_running(target, 0, timeout=10)
