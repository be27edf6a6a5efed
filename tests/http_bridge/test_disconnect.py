"""A client that goes away mid-stream cancels the upstream gRPC call (driven at the raw ASGI level)."""

from __future__ import annotations

import asyncio
import json

import pytest
from starlette.types import Message

from http_bridge.app import create_app
from http_bridge.settings import BridgeSettings
from tests.http_bridge.fakes import FakeClient, chat_scope, text

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("spec_version", ["2.3", "2.4"])
async def test_disconnect_cancels_generation(spec_version: str) -> None:
    fake = FakeClient(script=[text(0, "Hel")], block_after_script=True)
    app = create_app(BridgeSettings(_env_file=None), client=fake)
    body = json.dumps({"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]}).encode()
    scope = chat_scope(spec_version=spec_version)
    sent: list[Message] = []
    got_content = asyncio.Event()
    body_sent = False

    async def receive() -> Message:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await got_content.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if got_content.is_set() and spec_version == "2.4":
            raise OSError("client gone")  # how servers speaking ASGI 2.4 report a disconnect
        sent.append(message)
        if message["type"] == "http.response.body" and b"Hel" in message.get("body", b""):
            got_content.set()

    await asyncio.wait_for(app(scope, receive, send), timeout=5)
    assert sent[0]["status"] == 200
    assert fake.closed == ["cancelled"]


async def test_disconnect_cancels_non_stream_generation() -> None:
    fake = FakeClient(script=[text(0, "Hel")], block_after_script=True)
    app = create_app(BridgeSettings(_env_file=None), client=fake)
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}]}).encode()
    scope = chat_scope()
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> Message:
        if messages:
            return messages.pop()
        while not fake.requests:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # generation is under way (and blocked) when the client leaves
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        pass

    await asyncio.wait_for(app(scope, receive, send), timeout=5)
    assert fake.closed == ["cancelled"]
