"""Two model ids on two inference services behind one bridge (--model-routes); JSON logs and /metrics."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Process, free_port, grpc_serving, start, wait_until
from tests.e2e.fleet import READY, chat, metric, serve_args, served_ok

pytestmark = pytest.mark.e2e


@dataclass
class Routed:
    base_url: str
    metrics_ports: dict[str, int]  # model id → its service's metrics port
    services: dict[str, Process]
    bridge: Process


@pytest.fixture
def routed(model_dir: Path, tmp_path: Path) -> Iterator[Routed]:
    processes: list[Process] = []
    try:
        routes, metrics_ports, services = {}, {}, {}
        for model_id, scheme in (("alpha", ""), ("beta", "ipv4:")):
            port, metrics_port = free_port(), free_port()
            process = start(f"service-{model_id}", serve_args(model_dir, model_id, port, metrics_port), tmp_path)
            processes.append(process)
            wait_until(lambda port=port: grpc_serving(f"127.0.0.1:{port}", READY), process)  # type: ignore[misc]
            routes[model_id] = f"{scheme}127.0.0.1:{port}"
            metrics_ports[model_id], services[model_id] = metrics_port, process
        http_port = free_port()
        args = ["-m", "http_bridge", "--model-routes", json.dumps(routes), "--port", str(http_port)]
        bridge = start("bridge-routed", args, tmp_path)
        processes.append(bridge)
        base = f"http://127.0.0.1:{http_port}"
        wait_until(lambda: httpx.get(f"{base}/health/ready", timeout=2).status_code == 200, bridge)
        yield Routed(base, metrics_ports, services, bridge)
    finally:
        for process in reversed(processes):
            process.stop()


def test_routes_by_model(routed: Routed) -> None:
    base, ports = routed.base_url, routed.metrics_ports
    models = httpx.get(f"{base}/v1/models", timeout=10).json()
    assert [m["id"] for m in models["data"]] == ["alpha", "beta"]
    assert httpx.get(f"{base}/v1/models/beta", timeout=10).json()["id"] == "beta"
    assert httpx.get(f"{base}/v1/models/gamma", timeout=10).status_code == 404

    for model_id, other in (("alpha", "beta"), ("beta", "alpha")):
        before = served_ok(ports[model_id]), served_ok(ports[other])
        headers = {"x-request-id": f"route-{model_id}"}
        response = httpx.post(f"{base}/v1/chat/completions", json=chat(model_id), headers=headers, timeout=60)
        assert response.status_code == 200, response.text
        assert response.json()["model"] == model_id
        assert (served_ok(ports[model_id]), served_ok(ports[other])) == (before[0] + 1, before[1])

    calls = {m: metric(ports[m], "ortserve_requests_total") for m in ports}
    unknown = httpx.post(f"{base}/v1/chat/completions", json=chat("gamma"), timeout=60)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "model_not_found"
    assert {m: metric(ports[m], "ortserve_requests_total") for m in ports} == calls  # nothing was called

    # The bridge's own metrics and JSON logs.
    bridge_metrics = httpx.get(f"{base}/metrics", timeout=5).text
    assert 'ortserve_bridge_requests_total{route="/v1/chat/completions",status="200"} 2.0' in bridge_metrics
    assert 'ortserve_bridge_requests_total{route="/v1/chat/completions",status="404"} 1.0' in bridge_metrics
    assert 'ortserve_bridge_time_to_first_token_seconds_count{model="alpha"} 1.0' in bridge_metrics
    assert 'ortserve_bridge_completion_tokens_total{model="beta"} 4.0' in bridge_metrics
    lines = [json.loads(line) for line in routed.bridge.log.read_text().splitlines() if line.startswith("{")]
    assert lines and all({"time", "level", "logger", "message", "request_id"} <= set(line) for line in lines)
    mine = [line for line in lines if line["request_id"] == "route-alpha"]
    assert any("chat completion" in line["message"] for line in mine)
    assert any(line["logger"] == "uvicorn.access" for line in mine)

    # Ready means every route has a SERVING target.
    routed.services["beta"].stop()
    wait_until(lambda: httpx.get(f"{base}/health/ready", timeout=5).status_code == 503, routed.bridge, timeout=10)
    assert httpx.post(f"{base}/v1/chat/completions", json=chat("alpha"), timeout=60).status_code == 200
    assert httpx.post(f"{base}/v1/chat/completions", json=chat("beta"), timeout=60).status_code == 503
