"""Helpers of the reliability e2e tests: start a service/bridge with given flags, read load and memory."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx

from bench.sse import iter_payloads
from inference_service.api.v1 import model_pb2, model_pb2_grpc
from tests.e2e.conftest import MODEL_ID, Process, grpc_serving, start, wait_until

READY = "inference_service.api.v1.GenerationService"
LONG_CHAT: dict[str, Any] = {
    "model": MODEL_ID,
    "messages": [{"role": "user", "content": "Tell me a very long story about a dragon."}],
    "max_tokens": 800,
    "ignore_eos": True,  # keeps the sequence running until the client leaves or the deadline hits
    "temperature": 0,
}


def start_service(model_dir: Path, port: int, log_dir: Path, *flags: str, name: str = "inference") -> Process:
    args = ["-m", "inference_service", "serve", "--model", str(model_dir), "--model-id", MODEL_ID]
    process = start(name, [*args, "--port", str(port), "--max-model-len", "1024", *flags], log_dir)
    wait_until(lambda: grpc_serving(f"127.0.0.1:{port}", READY), process)
    return process


def start_bridge(target: str, port: int, log_dir: Path, *flags: str, name: str = "bridge") -> Process:
    args = ["-m", "http_bridge", "--inference-target", target, "--port", str(port), *flags]
    process = start(name, args, log_dir)
    wait_until(lambda: httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200, process)
    return process


def load(target: str) -> model_pb2.GetServerLoadResponse:
    with grpc.insecure_channel(target) as channel:
        return model_pb2_grpc.ModelServiceStub(channel).GetServerLoad(model_pb2.GetServerLoadRequest(), timeout=5)


def wait_for_running(target: str, expected: int = 0, timeout: float = 10.0) -> float:
    """Seconds until `expected` sequences run (and, for 0, none wait either); fails after `timeout`."""
    started = time.monotonic()
    while (now := load(target)).running_sequences != expected or (expected == 0 and now.waiting_requests):
        assert time.monotonic() - started < timeout, f"still {now} after {timeout} s"
        time.sleep(0.05)
    return time.monotonic() - started


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def sse_payloads(lines: Iterator[str]) -> list[str]:
    """The `data:` payloads of an SSE stream, to its end."""
    return list(iter_payloads(lines))


def is_openai_error(body: Any) -> bool:
    error = body.get("error") if isinstance(body, dict) else None
    return (
        isinstance(error, dict)
        and set(error) == {"message", "type", "param", "code"}
        and isinstance(error["message"], str)
        and isinstance(error["type"], str)
        and (error["param"] is None or isinstance(error["param"], str))
        and (error["code"] is None or isinstance(error["code"], str))
    )


def error_of(payload: str) -> dict[str, Any] | None:
    body = json.loads(payload)
    return body["error"] if is_openai_error(body) else None
