"""Two inference replicas behind one bridge (static ipv4 list, round_robin, client-side health checking)."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import MODEL_ID, Process, free_port, grpc_serving, start, wait_until
from tests.e2e.fleet import READY, chat, metric, serve_args, served_ok, sse_data

pytestmark = pytest.mark.e2e


@dataclass
class Replica:
    port: int
    metrics_port: int
    process: Process


@dataclass
class Fleet:
    a: Replica
    b: Replica
    base_url: str
    model_dir: Path
    logs: Path

    def start_replica(self, name: str, port: int, metrics_port: int) -> Replica:
        process = start(name, serve_args(self.model_dir, MODEL_ID, port, metrics_port), self.logs)
        wait_until(lambda: grpc_serving(f"127.0.0.1:{port}", READY), process)
        return Replica(port, metrics_port, process)


@pytest.fixture
def fleet(model_dir: Path, tmp_path: Path) -> Iterator[Fleet]:
    fleet = Fleet(None, None, "", model_dir, tmp_path)  # type: ignore[arg-type]
    bridge: Process | None = None
    try:
        fleet.a = fleet.start_replica("replica-a", free_port(), free_port())
        fleet.b = fleet.start_replica("replica-b", free_port(), free_port())
        http_port = free_port()
        target = f"ipv4:127.0.0.1:{fleet.a.port},127.0.0.1:{fleet.b.port}"
        bridge = start(
            "bridge", ["-m", "http_bridge", "--inference-target", target, "--port", str(http_port)], tmp_path
        )
        fleet.base_url = f"http://127.0.0.1:{http_port}"
        wait_until(lambda: httpx.get(f"{fleet.base_url}/health/ready", timeout=2).status_code == 200, bridge)
        yield fleet
    finally:
        for replica in (fleet.a, fleet.b):  # fleet.a is the restarted process when the test got that far
            if replica is not None:
                replica.process.stop()
        if bridge is not None:
            bridge.stop()


def post_chat(base_url: str, count: int) -> list[int]:
    return [
        httpx.post(f"{base_url}/v1/chat/completions", json=chat(MODEL_ID), timeout=60).status_code for _ in range(count)
    ]


def test_spread_failover_and_recovery(fleet: Fleet) -> None:
    a, b, base = fleet.a, fleet.b, fleet.base_url

    # 1. Requests spread over both replicas.
    assert post_chat(base, 8) == [200] * 8
    assert served_ok(a.metrics_port) >= 2 and served_ok(b.metrics_port) >= 2
    assert served_ok(a.metrics_port) + served_ok(b.metrics_port) == 8

    # 2. Four long streams (two per replica); SIGKILL replica a while they run.
    streaming = threading.Semaphore(0)

    def stream() -> list[object]:
        body = chat(MODEL_ID, max_tokens=150, ignore_eos=True, stream=True)
        with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=120) as response:
            assert response.status_code == 200
            events = []
            for event in sse_data(response.iter_lines()):
                events.append(event)
                if len(events) == 3:
                    streaming.release()
            return events

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(stream) for _ in range(4)]
        for _ in futures:
            assert streaming.acquire(timeout=60), "streams did not start"
        on_a = metric(a.metrics_port, "ortserve_running_sequences")
        a.process.popen.send_signal(signal.SIGKILL)
        a.process.popen.wait()
        results = [future.result() for future in futures]

    assert on_a >= 1
    failed = [events for events in results if any(isinstance(e, dict) and "error" in e for e in events)]
    assert len(failed) == on_a  # exactly the streams on the killed replica
    for events in failed:
        assert events[-1] == "[DONE]"
        errors = [e for e in events if isinstance(e, dict) and "error" in e]
        assert len(errors) == 1 and events[-2] is errors[0]
        assert errors[0]["error"]["type"] == "server_error"  # type: ignore[index]
    for events in results:
        if events not in failed:
            assert events[-1] == "[DONE]"
            finishes = [c["finish_reason"] for e in events if isinstance(e, dict) for c in e.get("choices", [])]
            assert finishes[-1] == "length"

    # 3. New requests all succeed on the surviving replica.
    before = served_ok(b.metrics_port)
    assert post_chat(base, 6) == [200] * 6
    assert served_ok(b.metrics_port) == before + 6

    # 4. Restart a on the same ports: it gets traffic again within a few seconds of being ready.
    fleet.a = a = fleet.start_replica("replica-a-again", a.port, a.metrics_port)
    ready_at = time.monotonic()
    while served_ok(a.metrics_port) == 0:
        assert time.monotonic() - ready_at < 10, "the restarted replica got no traffic"
        assert post_chat(base, 1) == [200]
    before_a, before_b = served_ok(a.metrics_port), served_ok(b.metrics_port)
    assert post_chat(base, 6) == [200] * 6
    assert served_ok(a.metrics_port) - before_a >= 2 and served_ok(b.metrics_port) - before_b >= 2
