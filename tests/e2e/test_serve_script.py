"""scripts/serve.sh, what `make serve` runs after its set-up: both services up, ready, serving; SIGTERM stops both;
ports that are taken (another `make serve`) fail it at once instead of a "ready" answered by the other stack."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from bench import processes
from tests.e2e.conftest import MODEL_ID, Process, free_port

pytestmark = pytest.mark.e2e
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "serve.sh"
READY = "ortserve is ready"


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def ports(monkeypatch: pytest.MonkeyPatch, model_dir: Path) -> tuple[int, int]:
    inference, bridge = free_port(), free_port()
    monkeypatch.setenv("INFERENCE_PORT", str(inference))
    monkeypatch.setenv("BRIDGE_PORT", str(bridge))
    monkeypatch.setenv("ORTSERVE_MODEL", str(model_dir))
    return inference, bridge


def test_serves_until_sigterm_stops_both(ports: tuple[int, int], tmp_path: Path) -> None:
    inference, bridge = ports
    script: Process = processes.start("serve-script", ["bash", str(SCRIPT)], tmp_path)
    try:
        processes.wait_until(lambda: READY in script.log.read_text(), script, 120.0)
        body = {"model": MODEL_ID, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
        response = httpx.post(f"http://127.0.0.1:{bridge}/v1/chat/completions", json=body, timeout=60)
        assert response.status_code == 200 and response.json()["usage"]["completion_tokens"] >= 1
        assert listening(inference)
    finally:
        script.stop()
    assert not listening(inference) and not listening(bridge), script.tail()


@pytest.mark.parametrize("taken", ["inference", "bridge"])
def test_a_taken_port_fails_at_once(ports: tuple[int, int], tmp_path: Path, taken: str) -> None:
    port = ports[0] if taken == "inference" else ports[1]
    with socket.create_server(("127.0.0.1", port)):
        script = processes.start(f"serve-script-{taken}", ["bash", str(SCRIPT)], tmp_path)
        try:
            assert script.popen.wait(30) == 1
        finally:
            script.stop()  # its trap stops what it started, had it started anything
    log = script.log.read_text()
    assert f"port {port} on 127.0.0.1 is in use" in log and READY not in log, log
    assert not listening(ports[1 if taken == "inference" else 0])  # nothing was started


def test_a_service_that_fails_to_start_ends_the_script(
    ports: tuple[int, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not 120 s of readiness polling after the inference service has exited: its status ends the script."""
    monkeypatch.setenv("ORTSERVE_MODEL", str(tmp_path / "no-such-model"))
    script = processes.start("serve-script-no-model", ["bash", str(SCRIPT)], tmp_path)
    try:
        assert script.popen.wait(30) != 0
    finally:
        script.stop()
    log = script.log.read_text()
    assert "not a folder, nor 'default' or a model name" in log and READY not in log, log
    assert not listening(ports[1]), "the bridge was left running"
