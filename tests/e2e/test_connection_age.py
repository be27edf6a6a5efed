"""--max-connection-age-s: the service ends client connections (gRPC GOAWAY) so that dns:/// clients re-resolve, and
a stream open on an aged connection still runs to its end (within the grace)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from inference_service.api.v1 import generation_pb2 as pb
from inference_service.api.v1 import generation_pb2_grpc
from tests.conftest import DEVICE
from tests.e2e.conftest import MODEL_ID, free_port, grpc_serving, start, wait_until

pytestmark = pytest.mark.e2e
AGE_S = 1.0


@pytest.fixture(scope="module")
def target(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    args = ["-m", "inference_service", "serve", "--model", str(model_dir), "--model-id", MODEL_ID]
    args += ["--port", str(port), "--device", DEVICE, "--max-num-seqs", "2", "--max-model-len", "1024"]
    args += ["--max-connection-age-s", str(AGE_S), "--max-connection-age-grace-s", "120"]
    inference = start("inference-aged", args, tmp_path_factory.mktemp("aged"))
    try:
        wait_until(lambda: grpc_serving(f"127.0.0.1:{port}", "inference_service.api.v1.GenerationService"), inference)
        yield f"127.0.0.1:{port}"
    finally:
        inference.stop()


def generate(stub: generation_pb2_grpc.GenerationServiceStub, max_tokens: int) -> tuple[str, float]:
    request = pb.GenerateRequest(
        model=MODEL_ID,
        prompt="Once upon a time",
        sampling=pb.SamplingParams(temperature=0),
        stopping=pb.StoppingCriteria(max_tokens=max_tokens, ignore_eos=True),
    )
    started = time.monotonic()
    finish = ""
    for response in stub.Generate(request, timeout=120):
        if response.HasField("complete"):
            finish = pb.FinishReason.Name(response.complete.finish_reason)
    return finish, time.monotonic() - started


def test_a_stream_outlives_its_connections_age_and_the_channel_reconnects(target: str) -> None:
    with grpc.insecure_channel(target) as channel:
        states: list[grpc.ChannelConnectivity] = []
        channel.subscribe(states.append)
        stub = generation_pb2_grpc.GenerationServiceStub(channel)
        finish, seconds = generate(stub, 400)
        assert seconds > 2 * AGE_S, f"the stream took only {seconds:.1f} s: it did not outlive the connection age"
        assert finish == "FINISH_REASON_MAX_TOKENS"
        deadline = time.monotonic() + 10
        while grpc.ChannelConnectivity.IDLE not in states[states.index(grpc.ChannelConnectivity.READY) :]:
            assert time.monotonic() < deadline, f"the server never ended the connection: {states}"
            time.sleep(0.05)
        assert generate(stub, 2)[0] == "FINISH_REASON_MAX_TOKENS"  # on a new connection
