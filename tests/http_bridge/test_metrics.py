"""GET /metrics: HTTP request series from the middleware, generation series from the metered client."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from http_bridge.app import create_app
from http_bridge.settings import BridgeSettings
from tests.http_bridge.fakes import MODEL_ID, FakeClient, complete, text

pytestmark = pytest.mark.anyio

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


async def scrape(http: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


async def test_requests_by_route_and_status(http: httpx.AsyncClient) -> None:
    assert (await http.post("/v1/chat/completions", json=CHAT)).status_code == 200
    assert (await http.post("/v1/chat/completions", json={**CHAT, "n": 0})).status_code == 400
    assert (await http.get(f"/v1/models/{MODEL_ID}")).status_code == 200
    assert (await http.get("/no/such/path")).status_code == 404
    samples = await scrape(http)
    route = (("route", "/v1/chat/completions"), ("status", "200"))
    assert samples[("ortserve_bridge_requests_total", route)] == 1
    assert samples[("ortserve_bridge_requests_total", (("route", "/v1/chat/completions"), ("status", "400")))] == 1
    assert samples[("ortserve_bridge_requests_total", (("route", "/v1/models/{model_id:path}"), ("status", "200")))]
    assert samples[("ortserve_bridge_requests_total", (("route", "unmatched"), ("status", "404")))] == 1
    chat_duration = ("ortserve_bridge_request_duration_seconds_count", (("route", "/v1/chat/completions"),))
    assert samples[chat_duration] == 2
    assert samples[("ortserve_bridge_requests_in_flight", ())] == 1  # the scrape itself


async def test_stream_timings_and_usage(fake: FakeClient, http: httpx.AsyncClient) -> None:
    # n=2: three chunks of choice 0 and two of choice 1 → 2 + 1 inter-token gaps; one prompt counted once.
    fake.script = [
        text(0, "a"),
        text(1, "x"),
        text(0, "b"),
        text(1, "y"),
        text(0, "c"),
        complete(0, prompt=7, completion=3),
        complete(1, prompt=7, completion=2),
    ]
    response = await http.post("/v1/chat/completions", json={**CHAT, "n": 2, "stream": True})
    assert response.text.endswith("data: [DONE]\n\n")
    samples = await scrape(http)
    model = (("model", "m"),)
    assert samples[("ortserve_bridge_time_to_first_token_seconds_count", model)] == 1
    assert samples[("ortserve_bridge_inter_token_latency_seconds_count", model)] == 3
    assert samples[("ortserve_bridge_prompt_tokens_total", model)] == 7
    assert samples[("ortserve_bridge_completion_tokens_total", model)] == 5


async def test_upstream_errors_and_no_series_for_unknown_models(fake: FakeClient, http: httpx.AsyncClient) -> None:
    from grpc import StatusCode

    from tests.http_bridge.fakes import rpc_error

    fake.script = [rpc_error(StatusCode.NOT_FOUND, "no such model")]
    assert (await http.post("/v1/chat/completions", json={**CHAT, "model": "nope"})).status_code == 404
    samples = await scrape(http)
    assert samples[("ortserve_bridge_upstream_errors_total", (("code", "NOT_FOUND"),))] == 1
    assert not [key for key in samples if ("model", "nope") in key[1]]


async def test_metrics_need_no_key(fake: FakeClient) -> None:
    app = create_app(BridgeSettings(_env_file=None, api_keys=["k"]), client=fake)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bridge") as http:
        assert (await http.get("/v1/models")).status_code == 401
        assert (await http.get("/metrics")).status_code == 200
        assert "/metrics" not in (await http.get("/openapi.json")).json()["paths"]
