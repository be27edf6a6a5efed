"""Per-key rate limits, model access and usage, on a real redis-server and in process (FakeClient for the service)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import httpx2
import openai
import pytest
from fastapi import FastAPI
from starlette.types import Message

from http_bridge.accounts.accounting import Accounting
from http_bridge.accounts.counters import utc_day
from http_bridge.accounts.keys import append_key
from http_bridge.accounts.rate_limits import format_reset, prompt_estimate, reservation
from http_bridge.app import create_app
from http_bridge.settings import BridgeSettings
from inference_service.api.v1 import generation_pb2 as pb
from tests.http_bridge.fakes import MODEL_ID, FakeClient, chat_scope, complete, hello, text
from tests.redis_server import RedisServer, redis_server

__all__ = ["redis_server"]  # the fixture

pytestmark = pytest.mark.anyio

BODY: dict[str, Any] = {"model": MODEL_ID, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}


@dataclass
class Bridge:
    app: FastAPI
    http: httpx.AsyncClient
    fake: FakeClient

    @property
    def accounting(self) -> Accounting:
        accounting: Accounting = self.app.state.accounting
        return accounting


@pytest.fixture(params=["memory", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "memory":
        yield None
        return
    server = RedisServer(tmp_path / "redis")
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    return tmp_path / "keys.jsonl"


@pytest.fixture
async def bridges(keys_file: Path) -> AsyncIterator[Callable[..., Any]]:
    opened: list[httpx.AsyncClient] = []
    apps: list[FastAPI] = []

    async def open_bridge(redis_url: str | None = None, **settings: Any) -> Bridge:
        options: dict[str, Any] = {"api_keys_file": keys_file, "keys_reload_interval_s": 0, **settings}
        fake = FakeClient()
        app = create_app(BridgeSettings(_env_file=None, redis_url=redis_url, **options), client=fake)
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bridge")
        opened.append(http)
        apps.append(app)
        return Bridge(app, http, fake)

    yield open_bridge
    for http in opened:
        await http.aclose()
    for app in apps:
        await app.state.accounting.aclose()


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def test_headers_count_down_then_429_with_retry_after(bridges: Any, keys_file: Path, store_url: Any) -> None:
    key = append_key(keys_file, "alice", rpm=3)
    bridge = await bridges(store_url, rate_limit_window_s=30)
    remaining = []
    for _ in range(3):
        response = await bridge.http.post("/v1/chat/completions", json=BODY, headers=auth(key))
        assert response.status_code == 200
        assert response.headers["x-ratelimit-limit-requests"] == "3"
        remaining.append(response.headers["x-ratelimit-remaining-requests"])
        assert response.headers["x-ratelimit-reset-requests"].endswith("s")
        assert "x-ratelimit-limit-tokens" not in response.headers  # no tpm: no token headers
    assert remaining == ["2", "1", "0"]
    refused = await bridge.http.post("/v1/chat/completions", json=BODY, headers=auth(key))
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 30
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    error = refused.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and error["type"] == "requests"
    assert "Limit 3, Used 3, Requested 1" in error["message"] and "alice" in error["message"]
    assert key not in refused.text
    assert len(bridge.fake.requests) == 3  # the refused request never reached the service
    models = await bridge.http.get("/v1/models", headers=auth(key))  # other routes carry the headers, unconsumed
    assert models.status_code == 200 and models.headers["x-ratelimit-remaining-requests"] == "0"


async def test_two_replicas_share_one_limit_through_redis(
    bridges: Any, keys_file: Path, redis_server: RedisServer
) -> None:
    key = append_key(keys_file, "shared", rpm=4)
    first, second = await bridges(redis_server.url), await bridges(redis_server.url)
    statuses = []
    for bridge in (first, second, first, second, first, second):
        statuses.append((await bridge.http.post("/v1/chat/completions", json=BODY, headers=auth(key))).status_code)
    assert statuses == [200, 200, 200, 200, 429, 429]


async def test_without_redis_each_replica_counts_alone(bridges: Any, keys_file: Path) -> None:
    key = append_key(keys_file, "alone", rpm=1)
    first, second = await bridges(), await bridges()
    for bridge in (first, second):
        assert (await bridge.http.post("/v1/chat/completions", json=BODY, headers=auth(key))).status_code == 200


async def test_the_window_resets(bridges: Any, keys_file: Path, store_url: Any) -> None:
    key = append_key(keys_file, "resets", rpm=1)
    bridge = await bridges(store_url, rate_limit_window_s=0.5)
    deadline = time.monotonic() + 5
    # The reset is read from the 429 itself: a second request could land in the next window (epoch-aligned).
    while (refused := await bridge.http.post("/v1/chat/completions", json=BODY, headers=auth(key))).status_code != 429:
        assert time.monotonic() < deadline
    reset_s = float(refused.headers["x-ratelimit-reset-requests"].removesuffix("s"))
    assert 0 < reset_s <= 0.5
    await asyncio.sleep(reset_s + 0.05)
    again = await bridge.http.post("/v1/chat/completions", json=BODY, headers=auth(key))
    assert again.status_code == 200
    assert again.headers["x-ratelimit-remaining-requests"] == "0"  # this request used the new window's one


async def test_tokens_reserved_then_corrected_to_real_usage(bridges: Any, keys_file: Path, store_url: Any) -> None:
    key = append_key(keys_file, "tokens", tpm=100)
    bridge = await bridges(store_url)
    first = await bridge.http.post("/v1/chat/completions", json=BODY, headers=auth(key))
    sent = bridge.fake.requests[0][0]
    reserved = reservation([sent])
    assert reserved == prompt_estimate(sent) + 10
    assert first.headers["x-ratelimit-remaining-tokens"] == str(100 - reserved)  # at admission
    await bridge.accounting.drain()
    after = await bridge.http.get("/v1/models", headers=auth(key))
    usage = first.json()["usage"]
    assert after.headers["x-ratelimit-remaining-tokens"] == str(100 - usage["total_tokens"])  # real usage: 9


async def test_a_request_over_the_token_limit_alone_is_refused(bridges: Any, keys_file: Path, store_url: Any) -> None:
    key = append_key(keys_file, "small", tpm=50)
    bridge = await bridges(store_url)
    refused = await bridge.http.post("/v1/chat/completions", json={**BODY, "max_tokens": 60}, headers=auth(key))
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "tokens"
    assert "this request alone is over the limit" in refused.json()["error"]["message"]
    assert refused.headers["x-ratelimit-remaining-tokens"] == "50"


async def test_streamed_tokens_count_when_the_client_disconnects(bridges: Any, keys_file: Path) -> None:
    key = append_key(keys_file, "leaver", tpm=1000)
    bridge = await bridges()
    chunks = [pb.GenerateResponse(index=0, chunk=pb.TokenChunk(text=t, token_ids=[1, 2])) for t in ("Hel", "lo")]
    bridge.fake.script, bridge.fake.block_after_script = chunks, True
    body = json.dumps({**BODY, "stream": True}).encode()
    scope = chat_scope([(b"authorization", f"Bearer {key}".encode())])
    got_content, body_sent = asyncio.Event(), False

    async def receive() -> Message:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await got_content.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body" and b'"content":"lo"' in message.get("body", b""):
            got_content.set()

    await asyncio.wait_for(bridge.app(scope, receive, send), timeout=5)
    assert bridge.fake.closed == ["cancelled"]
    assert bridge.fake.requests[0][0].output.return_token_ids  # the bridge asked for ids to count them
    await bridge.accounting.drain()
    rows = await bridge.accounting.counters.usage([utc_day()])
    assert [(r.key_name, r.requests, r.completion_tokens) for r in rows] == [("leaver", 1, 4)]
    assert rows[0].prompt_tokens == prompt_estimate(bridge.fake.requests[0][0])  # no usage came: the estimate
    window = await bridge.accounting.peek(bridge.app.state.keys.current().records[0])
    assert window is not None and window.state.tokens == rows[0].prompt_tokens + 4


async def test_model_access(bridges: Any, keys_file: Path) -> None:
    key = append_key(keys_file, "narrow", models=("other-model",))
    bridge = await bridges()
    denied = await bridge.http.post("/v1/chat/completions", json=BODY, headers=auth(key))
    assert denied.status_code == 404
    assert denied.json()["error"]["code"] == "model_not_found" and denied.json()["error"]["param"] == "model"
    assert bridge.fake.requests == []
    completions = await bridge.http.post("/v1/completions", json={"model": MODEL_ID, "prompt": "x"}, headers=auth(key))
    assert completions.status_code == 404
    listed = await bridge.http.get("/v1/models", headers=auth(key))
    assert listed.json()["data"] == []
    assert (await bridge.http.get(f"/v1/models/{MODEL_ID}", headers=auth(key))).status_code == 404
    wide = append_key(keys_file, "wide", models=(MODEL_ID,))
    assert [m["id"] for m in (await bridge.http.get("/v1/models", headers=auth(wide))).json()["data"]] == [MODEL_ID]
    assert (await bridge.http.post("/v1/chat/completions", json=BODY, headers=auth(wide))).status_code == 200


async def test_usage_sums_match_what_clients_were_sent(bridges: Any, keys_file: Path, store_url: Any) -> None:
    alice, bob = append_key(keys_file, "alice"), append_key(keys_file, "bob")
    admin = append_key(keys_file, "ops", admin=True)
    bridge = await bridges(store_url)
    two = [text(0, "a"), text(1, "b"), complete(0, prompt=5, completion=3), complete(1, prompt=5)]
    sent = {"alice": [0, 0, 0], "bob": [0, 0, 0]}
    for name, key, body in [("alice", alice, {**BODY, "n": 2}), ("bob", bob, BODY), ("alice", alice, BODY)]:
        bridge.fake.script = two if body.get("n") == 2 else hello()
        response = await bridge.http.post("/v1/chat/completions", json=body, headers=auth(key))
        usage = response.json()["usage"]
        sent[name][0] += 1
        sent[name][1] += usage["prompt_tokens"]
        sent[name][2] += usage["completion_tokens"]
    streamed = await bridge.http.post(
        "/v1/chat/completions",
        json={**BODY, "stream": True, "stream_options": {"include_usage": True}},
        headers=auth(bob),
    )
    usage = json.loads(streamed.text.split("data: ")[-2])["usage"]
    sent["bob"] = [
        sent["bob"][0] + 1,
        sent["bob"][1] + usage["prompt_tokens"],
        sent["bob"][2] + usage["completion_tokens"],
    ]
    await bridge.accounting.drain()
    page = (await bridge.http.get("/v1/usage", headers=auth(admin))).json()
    assert page["object"] == "page" and len(page["data"]) == 1
    got = {
        r["api_key_name"]: [r["num_model_requests"], r["input_tokens"], r["output_tokens"]]
        for r in page["data"][0]["results"]
    }
    assert got == sent
    assert all(r["model"] == MODEL_ID for r in page["data"][0]["results"])
    only_bob = (await bridge.http.get("/v1/usage?api_key_name=bob", headers=auth(admin))).json()
    assert [r["api_key_name"] for r in only_bob["data"][0]["results"]] == ["bob"]
    metrics = (await bridge.http.get("/metrics")).text
    assert f'ortserve_bridge_key_requests_total{{key_name="alice",model="{MODEL_ID}"}} 2.0' in metrics
    assert alice not in metrics and bridge.app.state.keys.current().records[0].sha256 not in metrics


@pytest.mark.parametrize(
    "query",
    [
        "start_date=yesterday",
        "start_date=2025-02-30",
        "end_date=2025-1-1",
        "start_date=2025-02-02&end_date=2025-02-01",
        "start_date=2020-01-01&end_date=2025-01-01",
    ],
)
async def test_usage_rejects_bad_dates(bridges: Any, keys_file: Path, query: str) -> None:
    admin = append_key(keys_file, "ops", admin=True)
    bridge = await bridges()
    response = await bridge.http.get(f"/v1/usage?{query}", headers=auth(admin))
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert response.json()["error"]["param"] in ("start_date", "end_date")


async def test_usage_is_for_admin_keys_only(bridges: Any, keys_file: Path) -> None:
    user = append_key(keys_file, "user")
    bridge = await bridges()
    assert (await bridge.http.get("/v1/usage")).status_code == 401
    forbidden = await bridge.http.get("/v1/usage", headers=auth(user))
    assert forbidden.status_code == 403 and forbidden.json()["error"]["type"] == "permission_error"


async def test_hot_reload_create_revoke_restrict(bridges: Any, keys_file: Path) -> None:
    from http_bridge.__main__ import main

    keys_file.write_text("")  # an empty keys file at start: authentication off (docs/deployment.md)
    bridge = await bridges(keys_reload_interval_s=0.2)
    assert (await bridge.http.get("/v1/models")).status_code == 200
    key = append_key(keys_file, "late")
    await asyncio.sleep(0.25)
    assert (await bridge.http.get("/v1/models")).status_code == 401  # a key was added: authentication on
    assert (await bridge.http.post("/v1/chat/completions", json=BODY, headers=auth(key))).status_code == 200
    main(["keys", "update", "--file", str(keys_file), "--name", "late", "--models", "someone-else"])
    await asyncio.sleep(0.25)
    assert (await bridge.http.post("/v1/chat/completions", json=BODY, headers=auth(key))).status_code == 404
    main(["keys", "revoke", "--file", str(keys_file), "--name", "late"])
    await asyncio.sleep(0.25)
    revoked = await bridge.http.get("/v1/models", headers=auth(key))
    assert revoked.status_code == 401 and "revoked" in revoked.json()["error"]["message"]
    keys_file.write_text("not a key\n")  # a broken edit keeps the previous keys
    await asyncio.sleep(0.25)
    assert (await bridge.http.get("/v1/models", headers=auth(key))).status_code == 401
    assert (await bridge.http.get("/v1/models")).status_code == 401  # auth stays on
    keys_file.write_text("")  # emptied while running: authentication stays on, no key is accepted
    await asyncio.sleep(0.25)
    assert (await bridge.http.get("/v1/models")).status_code == 401


async def test_expired_key_is_refused(bridges: Any, keys_file: Path) -> None:
    key = append_key(keys_file, "old", expires=int(time.time()) - 1)
    bridge = await bridges()
    response = await bridge.http.get("/v1/models", headers=auth(key))
    assert response.status_code == 401 and "expired" in response.json()["error"]["message"]


async def test_redis_down_fails_open_and_recovers(bridges: Any, keys_file: Path, redis_server: RedisServer) -> None:
    key = append_key(keys_file, "resilient", rpm=1000)
    admin = append_key(keys_file, "ops", admin=True)
    bridge = await bridges(redis_server.url, redis_retry_s=0.3, redis_timeout_s=0.2)
    assert (await bridge.http.post("/v1/chat/completions", json=BODY, headers=auth(key))).status_code == 200
    await bridge.accounting.drain()
    redis_server.kill()
    for _ in range(3):  # fail open: served, counted by this replica, never a 500
        response = await bridge.http.post("/v1/chat/completions", json=BODY, headers=auth(key))
        assert response.status_code == 200 and response.headers["x-ratelimit-remaining-requests"]
    await bridge.accounting.drain()
    metrics = (await bridge.http.get("/metrics")).text
    assert "ortserve_bridge_counter_store_shared 0.0" in metrics
    assert 'ortserve_bridge_counter_store_errors_total{operation="admit"} 1.0' in metrics  # then no more tries
    assert (await bridge.http.get("/v1/usage", headers=auth(admin))).status_code == 503
    redis_server.start()
    await asyncio.sleep(0.35)
    assert (await bridge.http.post("/v1/chat/completions", json=BODY, headers=auth(key))).status_code == 200
    await bridge.accounting.drain()
    assert "ortserve_bridge_counter_store_shared 1.0" in (await bridge.http.get("/metrics")).text
    page = (await bridge.http.get("/v1/usage", headers=auth(admin))).json()
    # The restarted Redis lost the first request; the 3 served while it was down were kept and written with the 4th.
    assert [r["num_model_requests"] for r in page["data"][0]["results"]] == [4]


async def test_a_hung_redis_costs_at_most_the_timeout(bridges: Any, keys_file: Path, redis_server: RedisServer) -> None:
    key = append_key(keys_file, "patient", rpm=1000)
    bridge = await bridges(redis_server.url, redis_retry_s=60, redis_timeout_s=0.2)
    assert (await bridge.http.post("/v1/chat/completions", json=BODY, headers=auth(key))).status_code == 200
    redis_server.pause()
    try:
        started = time.monotonic()
        statuses = [
            (await bridge.http.post("/v1/chat/completions", json=BODY, headers=auth(key))).status_code for _ in range(3)
        ]
        elapsed = time.monotonic() - started
    finally:
        redis_server.resume()
    assert statuses == [200, 200, 200]
    assert elapsed < 2.0  # one timeout (0.2 s), then the fallback without waiting


async def test_openai_client_sees_rate_limit_error(keys_file: Path) -> None:
    key = append_key(keys_file, "sdk", rpm=1)
    app = create_app(BridgeSettings(_env_file=None, api_keys_file=keys_file), client=FakeClient())
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://bridge") as http_client:
        sdk = openai.AsyncOpenAI(api_key=key, base_url="http://bridge/v1", http_client=http_client, max_retries=0)
        await sdk.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(openai.RateLimitError) as caught:
            await sdk.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "rate_limit_exceeded" and caught.value.type == "requests"
    assert caught.value.response.headers["retry-after"]


def test_reset_durations_read_like_openai() -> None:
    assert format_reset(1000) == "1s"
    assert format_reset(59_500) == "59.5s"
    assert format_reset(360_000) == "6m0s"
    assert format_reset(3_723_000) == "1h2m3s"
    assert format_reset(-5) == "0s"
