"""Clients that leave mid-generation free their sequences: proven over real HTTP with GetServerLoad."""

from __future__ import annotations

import contextlib
import itertools
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import MODEL_ID, Stack
from tests.e2e.reliability import load, wait_for_running

pytestmark = pytest.mark.e2e
LONG: dict[str, Any] = {
    "model": MODEL_ID,
    "messages": [{"role": "user", "content": "Tell me a very long story about a dragon."}],
    "max_tokens": 1500,
    "ignore_eos": True,  # keeps every sequence running until the client goes away
    "stream": True,
}


@pytest.mark.parametrize(("path", "body"), [("/v1/chat/completions", LONG), ("/v1/completions", {"prompt": "Once"})])
def test_closing_sse_streams_frees_every_sequence(stack: Stack, path: str, body: dict[str, Any]) -> None:
    wait_for_running(stack.grpc_target, 0, timeout=30)
    request = {**LONG, **body}
    if "prompt" in body:
        del request["messages"]
    with httpx.Client(base_url=stack.base_url, timeout=60) as client, contextlib.ExitStack() as streams:
        readers = []  # kept alive: a line iterator that is closed or collected closes its connection
        for _ in range(4):
            response = streams.enter_context(client.stream("POST", path, json=request))
            assert response.status_code == 200
            lines = response.iter_lines()
            readers.append(lines)
            chunks = [line for line in itertools.islice(lines, 6) if line.startswith("data: {")]
            assert len(chunks) == 3  # blank separator lines between events
        assert load(stack.grpc_target).running_sequences == 4  # all still generating while the clients are connected
    # The four connections are closed now.
    wait_for_running(stack.grpc_target, 0, timeout=3)


def test_non_stream_client_timeout_frees_its_sequence(stack: Stack) -> None:
    wait_for_running(stack.grpc_target, 0, timeout=30)
    body = {**LONG, "stream": False}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{stack.base_url}/v1/chat/completions", json=body, timeout=httpx.Timeout(60, read=1.5))
    wait_for_running(stack.grpc_target, 0, timeout=3)
