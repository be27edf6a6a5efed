"""Faults on real processes: an engine exception inside a step, 100 clients leaving mid-stream, and the inference
service SIGKILLed mid-stream and restarted on the same port (the bridge recovers without a restart)."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bench.sse import DONE, body_payloads
from tests.e2e.conftest import Process, free_port, wait_until
from tests.e2e.reliability import (
    LONG_CHAT,
    error_of,
    is_openai_error,
    rss_kib,
    sse_payloads,
    start_bridge,
    start_service,
    wait_for_running,
)

pytestmark = pytest.mark.e2e
SERVICE_FLAGS = ("--max-num-seqs", "8", "--fault-injection", "true")


@dataclass
class Pair:
    model_dir: Path
    logs: Path
    port: int
    base_url: str
    service: Process
    bridge: Process

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def pair(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    logs = tmp_path_factory.mktemp("faults")
    port, http_port = free_port(), free_port()
    service = start_service(model_dir, port, logs, *SERVICE_FLAGS)
    bridge = start_bridge(f"127.0.0.1:{port}", http_port, logs)
    pair = Pair(model_dir, logs, port, f"http://127.0.0.1:{http_port}", service, bridge)
    try:
        wait_until(lambda: httpx.get(f"{pair.base_url}/health/ready", timeout=2).status_code == 200, bridge)
        yield pair
    finally:
        pair.bridge.stop()
        pair.service.stop()


def test_engine_exception_fails_only_its_request(pair: Pair) -> None:
    url = f"{pair.base_url}/v1/chat/completions"
    results: dict[int, int] = {}

    def healthy(i: int) -> None:
        body = {**LONG_CHAT, "max_tokens": 40, "stream": i % 2 == 0}
        response = httpx.post(url, json=body, timeout=120)
        if body["stream"]:
            payloads = [p for p in body_payloads(response.text) if p != DONE]
            results[i] = response.status_code if not any('"error"' in p for p in payloads) else 500
        else:
            results[i] = response.status_code if response.json()["usage"]["completion_tokens"] == 40 else -1

    others = [threading.Thread(target=healthy, args=(i,)) for i in range(4)]
    for thread in others:
        thread.start()
    time.sleep(0.3)  # the healthy ones are running when the faulty one arrives
    fault = {"x-request-id": "fault-inject-1"}
    faulty = httpx.post(url, json={**LONG_CHAT, "max_tokens": 40}, headers=fault, timeout=60)
    assert faulty.status_code == 500 and is_openai_error(faulty.json())
    assert faulty.json()["error"]["type"] == "server_error"
    with httpx.stream(
        "POST", url, json={**LONG_CHAT, "max_tokens": 40, "stream": True}, headers={"x-request-id": "fault-inject-2"}
    ) as streamed:  # failing inside a step before its first token: an HTTP status, not a stream
        streamed.read()
        assert streamed.status_code == 500 and is_openai_error(streamed.json())
    for thread in others:
        thread.join(120)
    assert results == {0: 200, 1: 200, 2: 200, 3: 200}  # the concurrent requests completed in full
    assert httpx.get(f"{pair.base_url}/health/ready", timeout=5).status_code == 200
    after = httpx.post(url, json={**LONG_CHAT, "max_tokens": 4}, timeout=60)
    assert after.status_code == 200 and after.json()["usage"]["completion_tokens"] == 4  # the engine still steps
    wait_for_running(pair.target, timeout=10)


async def _short_stream(client: httpx.AsyncClient, url: str, chunks: int) -> int:
    body = {**LONG_CHAT, "stream": True, "temperature": 0.8}
    async with client.stream("POST", url, json=body) as response:
        assert response.status_code == 200
        seen = 0
        async for line in response.aiter_lines():
            seen += line.startswith("data: {")
            if seen >= chunks:
                break  # leaving the block closes the connection mid-stream
    return seen


async def _disconnect_many(url: str, total: int, at_once: int) -> list[int]:
    gate = asyncio.Semaphore(at_once)
    rng = random.Random(6)

    async def one(client: httpx.AsyncClient) -> int:
        async with gate:
            return await _short_stream(client, url, rng.randint(1, 3))

    limits = httpx.Limits(max_connections=at_once, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        return list(await asyncio.gather(*(one(client) for _ in range(total))))


def test_hundred_client_disconnects_free_everything(pair: Pair) -> None:
    url = f"{pair.base_url}/v1/chat/completions"
    asyncio.run(_disconnect_many(url, 20, 10))  # warm-up: allocator and caches reach their working size
    wait_for_running(pair.target, timeout=10)
    before = rss_kib(pair.service.popen.pid)
    seen = asyncio.run(_disconnect_many(url, 100, 10))
    assert len(seen) == 100 and all(1 <= n <= 3 for n in seen)
    freed = wait_for_running(pair.target, timeout=5)
    after = rss_kib(pair.service.popen.pid)
    growth = (after - before) / before
    print(f"100 disconnects: running back to 0 in {freed:.2f} s; RSS {before} → {after} KiB ({growth:+.1%})")
    assert growth < 0.15
    ok = httpx.post(url, json={**LONG_CHAT, "max_tokens": 4}, timeout=60)
    assert ok.status_code == 200


def test_service_killed_mid_stream_then_restarted(pair: Pair) -> None:
    url = f"{pair.base_url}/v1/chat/completions"
    streams, readers = [], []
    with httpx.Client(timeout=30) as client:
        for _ in range(3):
            response = client.send(client.build_request("POST", url, json={**LONG_CHAT, "stream": True}), stream=True)
            assert response.status_code == 200
            lines = response.iter_lines()
            assert next(line for line in lines if line.startswith("data: {"))
            streams.append(response)
            readers.append(lines)
        pair.service.popen.send_signal(signal.SIGKILL)
        pair.service.popen.wait(10)
        for response, lines in zip(streams, readers, strict=True):
            payloads = sse_payloads(lines)
            response.close()
            assert payloads[-1] == "[DONE]"
            error = error_of(payloads[-2])
            assert error is not None and error["type"] == "server_error", payloads[-2]
    started = time.monotonic()
    refused = httpx.post(url, json={**LONG_CHAT, "max_tokens": 4}, timeout=30)
    refused_s = time.monotonic() - started
    assert refused.status_code == 503 and is_openai_error(refused.json())
    assert refused_s < 5.0
    assert httpx.get(f"{pair.base_url}/health/ready", timeout=10).status_code == 503

    pair.service = start_service(pair.model_dir, pair.port, pair.logs, *SERVICE_FLAGS, name="inference-restarted")
    ready_at = time.monotonic()
    recovered = None
    while time.monotonic() - ready_at < 10:
        response = httpx.post(url, json={**LONG_CHAT, "max_tokens": 4}, timeout=30)
        if response.status_code == 200:
            recovered = time.monotonic() - ready_at
            break
        time.sleep(0.1)
    assert recovered is not None, "the bridge did not recover"
    print(f"kill: new request refused with 503 in {refused_s * 1000:.0f} ms; recovered {recovered:.2f} s after ready")
    assert recovered < 2.0  # generous: the bridge's reconnect backoff is capped at 1 s
    assert httpx.get(f"{pair.base_url}/health/ready", timeout=5).status_code == 200
    assert pair.bridge.popen.poll() is None  # the same bridge process throughout
    assert json.loads(httpx.get(f"{pair.base_url}/health", timeout=5).text) == {"status": "ok"}
