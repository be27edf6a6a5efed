"""The KV budget in a real service: --kv-cache-mib bounds admission, preemption recomputes without changing output."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from inference_service.api.v1 import generation_pb2 as pb
from inference_service.api.v1 import generation_pb2_grpc
from tests.e2e.conftest import MODEL_ID, Process, free_port
from tests.e2e.fleet import metric
from tests.e2e.reliability import load, start_service, wait_for_running

CAPACITY = 64  # tokens per slot; 1 MiB is less than one slot, so the budget is exactly one slot
QUESTIONS = ("Write a poem about the sea.", "Explain how plants grow.")
MAX_TOKENS = 30  # each chat: ~24 prompt tokens + 30 → together far beyond 64


@dataclass
class Service:
    target: str
    metrics_port: int
    process: Process


@pytest.fixture(scope="module")
def service(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    port, metrics_port = free_port(), free_port()
    flags = ("--max-num-seqs", "2", "--max-model-len", str(CAPACITY), "--kv-cache-mib", "1")
    process = start_service(
        model_dir, port, tmp_path_factory.mktemp("kv-budget"), *flags, "--metrics-port", str(metrics_port)
    )
    try:
        yield Service(f"127.0.0.1:{port}", metrics_port, process)
    finally:
        process.stop()


def chat(target: str, question: str) -> tuple[list[int], pb.GenerationComplete]:
    request = pb.GenerateRequest(
        model=MODEL_ID,
        chat=pb.ChatInput(
            messages=[pb.ChatMessage(role="system", content="Be kind."), pb.ChatMessage(role="user", content=question)]
        ),
        sampling=pb.SamplingParams(temperature=0),
        stopping=pb.StoppingCriteria(max_tokens=MAX_TOKENS, ignore_eos=True),
        output=pb.OutputOptions(return_token_ids=True),
    )
    ids: list[int] = []
    complete = None
    with grpc.insecure_channel(target) as channel:
        for response in generation_pb2_grpc.GenerationServiceStub(channel).Generate(request, timeout=120):
            if response.HasField("chunk"):
                ids.extend(response.chunk.token_ids)
            else:
                complete = response.complete
    assert complete is not None
    return ids, complete


def test_budget_is_reported_and_preempted_output_is_unchanged(service: Service) -> None:
    assert load(service.target).kv_tokens_total == CAPACITY
    alone = [chat(service.target, q) for q in QUESTIONS]  # one at a time: nothing to preempt
    assert metric(service.metrics_port, "ortserve_preemptions_total") == 0
    with ThreadPoolExecutor(len(QUESTIONS)) as pool:
        together = list(pool.map(lambda q: chat(service.target, q), QUESTIONS))
    assert metric(service.metrics_port, "ortserve_preemptions_total") >= 1
    for (ids_alone, done_alone), (ids, done) in zip(alone, together, strict=True):
        assert len(ids) == done.usage.completion_tokens == MAX_TOKENS  # every token exactly once
        assert ids == ids_alone
        assert done.usage.prompt_tokens == done_alone.usage.prompt_tokens
    wait_for_running(service.target)
    assert load(service.target).kv_tokens_used == 0
