"""Process-level behaviour of the inference service: metrics, JSON logs, graceful drain on SIGTERM."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from inference_service.api.v1 import generation_pb2 as pb
from inference_service.api.v1 import generation_pb2_grpc
from tests.e2e.conftest import MODEL_ID, Process, free_port, grpc_serving, start
from tests.e2e.reliability import READY, start_service

pytestmark = pytest.mark.e2e


def long_request(max_tokens: int = 120) -> pb.GenerateRequest:
    return pb.GenerateRequest(
        model=MODEL_ID,
        chat=pb.ChatInput(messages=[pb.ChatMessage(role="user", content="Tell me a story.")]),
        sampling=pb.SamplingParams(temperature=0.0),
        stopping=pb.StoppingCriteria(max_tokens=max_tokens, ignore_eos=True),
    )


@pytest.fixture
def service(model_dir: Path, tmp_path: Path) -> Iterator[tuple[Process, str, int]]:
    port, metrics_port = free_port(), free_port()
    flags = ("--metrics-port", str(metrics_port), "--shutdown-grace-s", "30", "--fault-injection", "true")
    process = start_service(model_dir, port, tmp_path, *flags, name="inference-lifecycle")
    target = f"127.0.0.1:{port}"
    try:
        yield process, target, metrics_port
    finally:
        process.stop()


def test_metrics_and_json_logs(service: tuple[Process, str, int]) -> None:
    process, target, metrics_port = service
    with grpc.insecure_channel(target) as channel:
        stub = generation_pb2_grpc.GenerationServiceStub(channel)
        responses = list(stub.Generate(long_request(8), metadata=(("x-request-id", "ignored"),)))
        assert responses[-1].complete.usage.completion_tokens == 8
        with pytest.raises(grpc.RpcError):
            list(stub.Generate(pb.GenerateRequest(model="nope", prompt="x")))
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    assert f'ortserve_requests_total{{model="{MODEL_ID}",status="OK"}} 1.0' in text
    assert 'ortserve_requests_total{model="unknown",status="NOT_FOUND"} 1.0' in text
    assert f'ortserve_generation_tokens_total{{model="{MODEL_ID}"}} 8.0' in text
    assert f'ortserve_time_to_first_token_seconds_count{{model="{MODEL_ID}"}} 1.0' in text
    assert f'ortserve_inter_token_latency_seconds_count{{model="{MODEL_ID}"}} 7.0' in text
    assert f'ortserve_running_sequences{{model="{MODEL_ID}"}} 0.0' in text
    assert f'ortserve_preemptions_total{{model="{MODEL_ID}"}} 0.0' in text
    assert 'execution_provider="CPUExecutionProvider"' in text
    lines = [json.loads(line) for line in process.log.read_text().splitlines() if line.startswith("{")]
    assert lines and all({"time", "level", "logger", "message", "request_id"} <= set(line) for line in lines)
    failed = [line for line in lines if line["message"].startswith("request failed")]
    assert failed and failed[0]["request_id"] != "-"


def test_sigterm_drains_in_flight_then_exits(service: tuple[Process, str, int]) -> None:
    process, target, _ = service
    with grpc.insecure_channel(target) as channel:
        stub = generation_pb2_grpc.GenerationServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        call = stub.Generate(long_request(120), timeout=120)
        first = next(call)
        assert first.HasField("chunk")
        results: list[pb.GenerateResponse] = []
        reader = threading.Thread(target=lambda: results.extend(call))
        reader.start()
        process.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        status = None
        while time.monotonic() < deadline:
            status = health.Check(health_pb2.HealthCheckRequest(service=READY), timeout=2).status
            if status == health_pb2.HealthCheckResponse.NOT_SERVING:
                break
            time.sleep(0.05)
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(grpc.RpcError) as refused:
            list(stub.Generate(long_request(4), timeout=10))
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        reader.join(60)
    assert results and results[-1].complete.finish_reason == pb.FINISH_REASON_MAX_TOKENS
    assert results[-1].complete.usage.completion_tokens == 120  # the in-flight request finished
    assert process.popen.wait(30) == 0


def test_injected_engine_fault_fails_only_its_request(service: tuple[Process, str, int]) -> None:
    _, target, _ = service
    with grpc.insecure_channel(target) as channel:
        stub = generation_pb2_grpc.GenerationServiceStub(channel)
        healthy = stub.Generate(long_request(40), timeout=120)
        first = next(healthy)
        faulty = long_request(40)
        faulty.request_id = "fault-inject-1"
        with pytest.raises(grpc.RpcError) as err:
            list(stub.Generate(faulty, timeout=60))
        assert err.value.code() == grpc.StatusCode.INTERNAL
        rest = list(healthy)
        assert first.HasField("chunk") and rest[-1].complete.usage.completion_tokens == 40
        assert grpc_serving(target, READY)
        after = list(stub.Generate(long_request(4), timeout=60))
        assert after[-1].complete.finish_reason == pb.FINISH_REASON_MAX_TOKENS


def test_a_second_service_on_a_taken_port_exits_and_the_first_keeps_all_requests(
    service: tuple[Process, str, int], model_dir: Path, tmp_path: Path
) -> None:
    """gRPC binds with SO_REUSEPORT by default: a second service on the same port used to start and take half of
    the new connections. Now it, and one on a taken metrics port, exits 1 with a message, before loading its model."""
    first, target, metrics_port = service
    port = target.rsplit(":", 1)[1]
    args = ["-m", "inference_service", "serve", "--model", str(model_dir), "--model-id", MODEL_ID]
    taken_ports = {"grpc": ["--port", port], "metrics": ["--port", "0", "--metrics-port", str(metrics_port)]}
    for name, flags in taken_ports.items():
        second = start(f"inference-second-{name}", [*args, *flags], tmp_path)
        try:
            assert second.popen.wait(timeout=60) == 1, second.tail()
            log = second.tail(50)
            assert f"not serving: cannot listen on 127.0.0.1:{flags[-1]}" in log, log
            assert "Traceback" not in log and "warm-up" not in log, log
        finally:
            second.stop()
    with grpc.insecure_channel(target) as channel:
        stub = generation_pb2_grpc.GenerationServiceStub(channel)
        for _ in range(4):  # new connections, every one to the first service
            responses = list(stub.Generate(long_request(2)))
            assert responses[-1].complete.usage.completion_tokens == 2
    assert first.popen.poll() is None
