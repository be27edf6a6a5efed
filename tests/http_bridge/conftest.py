from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from http_bridge.app import create_app
from http_bridge.settings import BridgeSettings
from tests.http_bridge.fakes import FakeClient


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def fake() -> FakeClient:
    return FakeClient()


@pytest.fixture
def settings() -> BridgeSettings:
    return BridgeSettings(_env_file=None, first_message_timeout_s=5, request_timeout_s=30)


@pytest.fixture
async def http(fake: FakeClient, settings: BridgeSettings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, client=fake)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as client:
        yield client
