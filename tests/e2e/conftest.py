"""Real processes on 127.0.0.1: the inference service on the real default model, and the HTTP bridge."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench import processes
from bench.processes import Process, free_port
from tests.conftest import DEVICE

__all__ = [
    "MODEL_ID",
    "Process",
    "create_key",
    "free_port",
    "grpc_serving",
    "running_stack",
    "start",
    "wait_until",
]  # imported by other tests

MODEL_ID = "smollm2-135m-instruct"


def start(name: str, args: list[str], log_dir: Path) -> Process:
    """A Python child (`args` after the interpreter) with its output in `log_dir/<name>.log`."""
    return processes.start(name, [sys.executable, *args], log_dir)


def wait_until(check: Callable[[], object], process: Process, timeout: float = 120.0) -> None:
    """Poll `check` (any exception counts as "not yet"); fail the test when `process` exits or `timeout` passes."""
    try:
        processes.wait_until(check, process, timeout, ignore=(Exception,), poll_s=0.2)
    except processes.NotReady as exc:
        pytest.fail(str(exc))


def grpc_serving(target: str, service: str = "") -> bool:
    with grpc.insecure_channel(target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


@dataclass
class Stack:
    grpc_target: str
    base_url: str
    inference: Process
    bridge: Process


@contextlib.contextmanager
def running_stack(
    log_dir: Path, serve_args: list[str], bridge_args: Sequence[str] = (), ready_timeout: float = 120.0
) -> Iterator[Stack]:
    """`python -m inference_service serve *serve_args` and a bridge on it (`bridge_args` added), both ready; stopped
    on exit, bridge first."""
    grpc_port, http_port = free_port(), free_port()
    target = f"127.0.0.1:{grpc_port}"
    inference = start("inference", ["-m", "inference_service", "serve", *serve_args, "--port", str(grpc_port)], log_dir)
    bridge_cmd = ["-m", "http_bridge", "--inference-target", target, "--port", str(http_port), *bridge_args]
    bridge = start("bridge", bridge_cmd, log_dir)
    try:
        wait_until(lambda: grpc_serving(target, "inference_service.api.v1.GenerationService"), inference, ready_timeout)
        base = f"http://127.0.0.1:{http_port}"
        wait_until(lambda: httpx.get(f"{base}/health/ready", timeout=2).status_code == 200, bridge)
        yield Stack(target, base, inference, bridge)
    finally:
        for process in (bridge, inference):
            process.stop()


def create_key(keys_file: Path, name: str) -> str:
    """`python -m http_bridge keys create`: the key printed once (its hash appended to `keys_file`)."""
    created = subprocess.run(
        [sys.executable, "-m", "http_bridge", "keys", "create", "--file", str(keys_file), "--name", name],
        capture_output=True,
        text=True,
        check=True,
    )
    return created.stdout.strip()


@pytest.fixture(scope="session")
def stack(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    args = ["--model", str(model_dir), "--model-id", MODEL_ID, "--max-num-seqs", "8", "--max-model-len", "2048"]
    with running_stack(tmp_path_factory.mktemp("logs"), [*args, "--device", DEVICE]) as running:
        yield running


@dataclass
class AuthBridge:
    """A second bridge on the same inference service, with a key from `keys create` in a hashed keys file."""

    base_url: str
    key: str
    process: Process


@pytest.fixture(scope="session")
def auth_bridge(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthBridge]:
    folder = tmp_path_factory.mktemp("auth")
    keys_file = folder / "keys.jsonl"
    key = create_key(keys_file, "e2e")
    port = free_port()
    args = ["-m", "http_bridge", "--inference-target", stack.grpc_target, "--port", str(port)]
    bridge = start("auth-bridge", [*args, "--api-keys-file", str(keys_file)], folder)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: httpx.get(f"{base}/health/ready", timeout=2).status_code == 200, bridge)
        yield AuthBridge(base, key, bridge)
    finally:
        bridge.stop()


NODE_DIR = Path(__file__).parent / "node"


def run_node_tests(script: str, env: dict[str, str]) -> None:
    """`node --test` on one file of tests/e2e/node with `env` added; fails the test unless every node test passed."""
    node = shutil.which("node")
    assert node is not None, "Node.js is required (the machine's Node.js 20+)"
    assert (NODE_DIR / "node_modules" / "openai").is_dir(), "run `make node-deps` (npm ci --prefix tests/e2e/node)"
    result = subprocess.run(
        [node, "--test", "--test-reporter=spec", script],
        cwd=NODE_DIR,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert result.returncode == 0, f"node --test failed:\n{result.stdout}\n{result.stderr}"
    assert "# fail 0" in result.stdout or "ℹ fail 0" in result.stdout, result.stdout
