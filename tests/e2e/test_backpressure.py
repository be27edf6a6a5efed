"""Backpressure and limits on real processes: a service with one KV slot and one waiting place, two bridges.

Beyond capacity the answer is 429 + Retry-After at once (RESOURCE_EXHAUSTED), a request that waits too long for a
slot is a 504 (DEADLINE_EXCEEDED from --max-queue-wait-s), an expired bridge deadline is a 504 and frees the
sequence, max_tokens beyond the context is a 400, and a body over the limit is a 413. Nothing hangs.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.sse import iter_payloads
from tests.e2e.conftest import MODEL_ID, Process, free_port
from tests.e2e.reliability import (
    LONG_CHAT,
    is_openai_error,
    load,
    sse_payloads,
    start_bridge,
    start_service,
    wait_for_running,
)

pytestmark = pytest.mark.e2e
QUEUE_WAIT_S = 1.0
BRIDGE_TIMEOUT_S = 2.0


@dataclass
class Tiny:
    target: str
    base_url: str  # bridge with default deadlines
    short_url: str  # bridge whose gRPC deadline is BRIDGE_TIMEOUT_S
    processes: list[Process]


@pytest.fixture(scope="module")
def tiny(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tiny]:
    logs = tmp_path_factory.mktemp("backpressure")
    port, http_port, short_port = free_port(), free_port(), free_port()
    target = f"127.0.0.1:{port}"
    processes: list[Process] = []
    try:
        flags = ["--max-num-seqs", "1", "--max-waiting", "1", "--max-queue-wait-s", str(QUEUE_WAIT_S)]
        processes.append(start_service(model_dir, port, logs, *flags))
        processes.append(start_bridge(target, http_port, logs))
        short = ["--request-timeout-s", str(BRIDGE_TIMEOUT_S)]
        processes.append(start_bridge(target, short_port, logs, *short, name="bridge-short-deadline"))
        yield Tiny(target, f"http://127.0.0.1:{http_port}", f"http://127.0.0.1:{short_port}", processes)
    finally:
        for process in reversed(processes):
            process.stop()


@dataclass
class Outcome:
    status: int
    seconds: float  # until the status line arrived
    headers: httpx.Headers
    body: Any


def test_beyond_capacity_429_at_once_and_queue_wait_504(tiny: Tiny) -> None:
    wait_for_running(tiny.target)
    outcomes: list[Outcome] = []
    lock, release = threading.Lock(), threading.Event()

    def one() -> None:
        with httpx.Client(timeout=30) as client:
            started = time.monotonic()
            with client.stream("POST", f"{tiny.base_url}/v1/chat/completions", json={**LONG_CHAT, "stream": True}) as r:
                seconds = time.monotonic() - started
                if r.status_code == 200:
                    lines = r.iter_lines()  # kept alive: a collected line iterator closes the connection
                    body: Any = next(iter_payloads(lines))
                    with lock:
                        outcomes.append(Outcome(200, seconds, r.headers, body))
                    release.wait(30)  # hold the slot until the others have their answer
                    return
                r.read()
                with lock:
                    outcomes.append(Outcome(r.status_code, seconds, r.headers, r.json()))

    threads = [threading.Thread(target=one) for _ in range(10)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while len(outcomes) < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    release.set()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads), "a request hung"
    by_status = sorted(o.status for o in outcomes)
    assert by_status == [200, *[429] * 8, 504], by_status
    for o in outcomes:
        if o.status == 429:
            assert o.seconds < 2.0, f"429 took {o.seconds:.2f} s"  # at once: generous bound, not a benchmark
            assert int(o.headers["retry-after"]) >= 1
            assert is_openai_error(o.body) and o.body["error"]["type"] == "rate_limit_error"
        elif o.status == 504:
            assert o.seconds >= QUEUE_WAIT_S * 0.9
            assert is_openai_error(o.body) and o.body["error"]["type"] == "timeout"
    slowest_429 = max(o.seconds for o in outcomes if o.status == 429)
    print(f"429 latency: slowest of 8 = {slowest_429 * 1000:.0f} ms")
    wait_for_running(tiny.target)
    after = httpx.post(f"{tiny.base_url}/v1/chat/completions", json={**LONG_CHAT, "max_tokens": 3}, timeout=60)
    assert after.status_code == 200


@pytest.mark.parametrize("stream", [False, True])
def test_expired_bridge_deadline_cancels_and_frees_the_sequence(tiny: Tiny, stream: bool) -> None:
    wait_for_running(tiny.target)
    url = f"{tiny.short_url}/v1/chat/completions"
    started = time.monotonic()
    with httpx.Client(timeout=60) as client, client.stream("POST", url, json={**LONG_CHAT, "stream": stream}) as r:
        if stream:
            assert r.status_code == 200
            payloads = sse_payloads(r.iter_lines())
            assert payloads[-1] == "[DONE]"
            error = json.loads(payloads[-2])
            assert is_openai_error(error) and error["error"]["type"] == "timeout"
            assert len(payloads) > 3  # it streamed tokens before the deadline
        else:
            r.read()
            assert r.status_code == 504
            assert is_openai_error(r.json()) and r.json()["error"]["type"] == "timeout"
    elapsed = time.monotonic() - started
    assert BRIDGE_TIMEOUT_S * 0.9 <= elapsed < BRIDGE_TIMEOUT_S + 10
    freed = wait_for_running(tiny.target, timeout=5)
    print(f"deadline {BRIDGE_TIMEOUT_S} s (stream={stream}): answered after {elapsed:.2f} s, freed {freed:.2f} s later")
    assert load(tiny.target).kv_tokens_used <= load(tiny.target).kv_tokens_total


def test_max_tokens_beyond_context_is_400(tiny: Tiny) -> None:
    body = {**LONG_CHAT, "max_tokens": 5000}  # the service runs with --max-model-len 1024
    response = httpx.post(f"{tiny.base_url}/v1/chat/completions", json=body, timeout=30)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert (error["code"], error["param"]) == ("context_length_exceeded", "messages")
    assert "1024" in error["message"]


def test_body_over_limit_is_413_and_bridge_keeps_serving(tiny: Tiny) -> None:
    big = {"model": MODEL_ID, "messages": [{"role": "user", "content": "x" * (5 * 1024 * 1024)}]}
    response = httpx.post(f"{tiny.base_url}/v1/chat/completions", json=big, timeout=30)
    assert response.status_code == 413
    assert is_openai_error(response.json()) and response.json()["error"]["code"] == "request_too_large"
    many = {"model": MODEL_ID, "messages": [{"role": "user", "content": "hi"}] * 300}
    response = httpx.post(f"{tiny.base_url}/v1/chat/completions", json=many, timeout=30)
    assert response.status_code == 400 and response.json()["error"]["param"] == "messages"
    assert httpx.get(f"{tiny.base_url}/health/ready", timeout=5).status_code == 200
    ok = httpx.post(f"{tiny.base_url}/v1/chat/completions", json={**LONG_CHAT, "max_tokens": 3}, timeout=60)
    assert ok.status_code == 200
