from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from http_bridge.app import create_app
from http_bridge.settings import BridgeSettings
from tests.http_bridge.fakes import FakeClient

pytestmark = pytest.mark.anyio

BODY: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
async def secured() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(BridgeSettings(_env_file=None, api_keys=["k1", "k2"]), client=FakeClient())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bridge") as client:
        yield client


@pytest.mark.parametrize("header", [None, "Bearer nope", "Basic k1", "Bearer ", "k1"])
async def test_rejected_keys(secured: httpx.AsyncClient, header: str | None) -> None:
    headers = {"authorization": header} if header is not None else {}
    for method, path, body in [("POST", "/v1/chat/completions", BODY), ("GET", "/v1/models", None)]:
        response = await secured.request(method, path, json=body, headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "authentication_error"
        assert response.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize("key", ["k1", "k2"])
async def test_accepted_keys(secured: httpx.AsyncClient, key: str) -> None:
    headers = {"authorization": f"Bearer {key}"}
    assert (await secured.post("/v1/chat/completions", json=BODY, headers=headers)).status_code == 200
    assert (await secured.get("/v1/models", headers=headers)).status_code == 200


async def test_health_needs_no_key(secured: httpx.AsyncClient) -> None:
    assert (await secured.get("/health")).status_code == 200
    assert (await secured.get("/health/ready")).status_code == 200


async def test_auth_off_by_default(http: httpx.AsyncClient) -> None:
    assert (await http.get("/v1/models", headers={"authorization": "Bearer anything"})).status_code == 200
