"""Model routing: RoutingClient over fake per-target clients, through the app (no gRPC)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest

from http_bridge.app import create_app
from http_bridge.settings import BridgeSettings
from http_bridge.upstream.routing import RoutesError, RoutingClient, load_routes
from inference_service.api.v1 import model_pb2
from tests.http_bridge.fakes import FakeClient, rpc_error

pytestmark = pytest.mark.anyio

CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


def served(*ids: str) -> FakeClient:
    return FakeClient(models=[model_pb2.ModelInfo(id=i, created=1, fingerprint=f"fp-{i}") for i in ids])


@pytest.fixture
def a() -> FakeClient:
    return served("alpha", "shared")


@pytest.fixture
def b() -> FakeClient:
    return served("beta", "shared", "unrouted")


@pytest.fixture
def routing(a: FakeClient, b: FakeClient) -> RoutingClient:
    return RoutingClient({"t-a": a, "t-b": b}, {"alpha": "t-a", "beta": "t-b", "shared": "t-b"})


@pytest.fixture
async def http(routing: RoutingClient, settings: BridgeSettings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, client=routing)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bridge") as client:
        yield client


async def test_chat_goes_to_the_models_target(http: httpx.AsyncClient, a: FakeClient, b: FakeClient) -> None:
    for model, target, other in (("alpha", a, b), ("beta", b, a)):
        target.requests.clear()
        other.requests.clear()
        response = await http.post("/v1/chat/completions", json={**CHAT, "model": model})
        assert response.status_code == 200, response.text
        assert [r.model for r, _, _ in target.requests] == [model]
        assert other.requests == []
        stream = await http.post("/v1/completions", json={"model": model, "prompt": "x", "stream": True})
        assert stream.text.endswith("data: [DONE]\n\n")
        assert len(target.requests) == 2 and other.requests == []


@pytest.mark.parametrize("stream", [False, True])
async def test_unknown_model_is_404_without_calling_anything(
    http: httpx.AsyncClient, a: FakeClient, b: FakeClient, stream: bool
) -> None:
    for path, body in (("/v1/chat/completions", CHAT), ("/v1/completions", {"prompt": "x"})):
        response = await http.post(path, json={**body, "model": "gamma", "stream": stream})
        assert response.status_code == 404
        error = response.json()["error"]
        assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "model_not_found", "model")
        assert "gamma" in error["message"]
    assert a.requests == b.requests == []


async def test_models_lists_the_union_of_routed_models(http: httpx.AsyncClient) -> None:
    listed = (await http.get("/v1/models")).json()
    # "shared" is served by both but routed to t-b only (listed once); "unrouted" is not routed: not listed.
    assert [m["id"] for m in listed["data"]] == ["alpha", "beta", "shared"]
    assert (await http.get("/v1/models/beta")).json()["id"] == "beta"
    missing = await http.get("/v1/models/unrouted")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"


async def test_models_skips_a_failing_target_but_not_all(routing: RoutingClient, a: FakeClient) -> None:
    async def down() -> list[model_pb2.ModelInfo]:
        raise rpc_error(grpc.StatusCode.UNAVAILABLE, "down")

    a.list_models = down  # type: ignore[method-assign]
    assert [m.id for m in await routing.list_models()] == ["beta", "shared"]
    routing.clients["t-b"].list_models = down  # type: ignore[method-assign]
    with pytest.raises(grpc.aio.AioRpcError):
        await routing.list_models()


async def test_ready_needs_every_route(http: httpx.AsyncClient, a: FakeClient, b: FakeClient) -> None:
    assert (await http.get("/health/ready")).status_code == 200
    b.healthy = False
    assert (await http.get("/health/ready")).status_code == 503
    b.healthy, a.healthy = True, False
    assert (await http.get("/health/ready")).status_code == 503


async def test_without_routes_every_model_is_forwarded(a: FakeClient) -> None:
    routing = RoutingClient({"only": a}, {}, default_target="only")
    assert routing.client_for("anything") is a
    assert [m.id for m in await routing.list_models()] == ["alpha", "shared"]
    assert await routing.health(1)


def test_load_routes_merges_file_and_setting(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    path.write_text(json.dumps({"a": "dns:///a:50051", "b": "10.0.0.1:1"}))
    settings = BridgeSettings(_env_file=None, model_routes_file=path, model_routes={"b": " ipv4:10.0.0.2:1 "})
    assert load_routes(settings) == {"a": "dns:///a:50051", "b": "ipv4:10.0.0.2:1"}
    assert load_routes(BridgeSettings(_env_file=None)) == {}


@pytest.mark.parametrize("content", ["[1]", "{not json", '{"a": ""}', '{"a": 5}'])
def test_bad_routes_fail_at_start(tmp_path: Path, content: str) -> None:
    path = tmp_path / "routes.json"
    path.write_text(content)
    with pytest.raises(RoutesError):
        load_routes(BridgeSettings(_env_file=None, model_routes_file=path))


def test_routes_from_env_and_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    from http_bridge.__main__ import load_settings

    monkeypatch.setenv("ORTSERVE_BRIDGE_MODEL_ROUTES", '{"m": "127.0.0.1:50061"}')
    assert BridgeSettings(_env_file=None).model_routes == {"m": "127.0.0.1:50061"}
    assert load_settings(["--model-routes", '{"n": "h:1"}']).model_routes == {"n": "h:1"}
    monkeypatch.setenv("ORTSERVE_BRIDGE_MODEL_ROUTES", "")
    assert BridgeSettings(_env_file=None).model_routes == {}


async def test_open_makes_one_channel_per_distinct_target() -> None:
    settings = BridgeSettings(
        _env_file=None, model_routes={"a": "127.0.0.1:1", "b": "127.0.0.1:1", "c": "ipv4:127.0.0.1:2,127.0.0.1:3"}
    )
    routing = RoutingClient.open(settings)
    try:
        assert sorted(routing.clients) == ["127.0.0.1:1", "ipv4:127.0.0.1:2,127.0.0.1:3"]
        assert routing.client_for("a") is routing.client_for("b")
        assert await routing.health(0.5) is False  # nothing listens there
    finally:
        await routing.aclose()
