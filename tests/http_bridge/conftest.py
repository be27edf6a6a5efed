from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import httpx2
import openai
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


@pytest.fixture
async def sdk(fake: FakeClient) -> AsyncIterator[openai.AsyncOpenAI]:
    """The official OpenAI SDK on the bridge in process (httpx2: the transport the SDK's own client uses)."""
    app = create_app(BridgeSettings(_env_file=None), client=fake)
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://bridge") as http_client:
        yield openai.AsyncOpenAI(api_key="unused", base_url="http://bridge/v1", http_client=http_client, max_retries=0)
