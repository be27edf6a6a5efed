"""A client that vanishes without closing its connection (host down, network partition, a middlebox that dropped the
connection) has its requests cancelled and their sequences freed once it fails to answer the service's keepalive
ping, instead of generating on until max_tokens or the deadline."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from inference_service.api.v1 import generation_pb2 as pb
from inference_service.api.v1 import generation_pb2_grpc
from tests.e2e.conftest import MODEL_ID, free_port
from tests.e2e.fleet import metric
from tests.e2e.reliability import load, start_service, wait_for_running
from tests.silent_proxy import SilentProxy

pytestmark = pytest.mark.e2e


@pytest.fixture
def service(model_dir: Path, tmp_path: Path) -> Iterator[tuple[str, int]]:
    port, metrics_port = free_port(), free_port()
    flags = ["--keepalive-time-s", "1", "--keepalive-timeout-s", "1", "--metrics-port", str(metrics_port)]
    flags += ["--speculative", "none"]  # one token a step: the generation below runs for seconds
    process = start_service(model_dir, port, tmp_path, *flags, name="inference-keepalive")
    try:
        yield f"127.0.0.1:{port}", metrics_port
    finally:
        process.stop()


def test_a_client_gone_silent_has_its_request_cancelled(service: tuple[str, int]) -> None:
    target, metrics_port = service
    proxy = SilentProxy(int(target.rsplit(":", 1)[1]))
    request = pb.GenerateRequest(
        model=MODEL_ID,
        prompt="Once upon a time",
        sampling=pb.SamplingParams(temperature=0),
        stopping=pb.StoppingCriteria(max_tokens=1000, ignore_eos=True),
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{proxy.port}")
    try:
        stream = generation_pb2_grpc.GenerationServiceStub(channel).Generate(request, timeout=120)
        for _ in range(3):
            assert next(stream).HasField("chunk")
        assert load(target).running_sequences == 1
        proxy.silence()
        wait_for_running(target, 0, timeout=30)
        # cancelled (ping unanswered within keepalive 1 s + timeout 1 s), not run to its 1,000 tokens
        assert metric(metrics_port, "ortserve_requests_total", status="CANCELLED") == 1
        assert metric(metrics_port, "ortserve_requests_total", status="OK") == 0
    finally:
        proxy.close()
        channel.close()
