"""Secrets and client-chosen strings stay out of the bridge's logs and errors (real bridge process, JSON logs)."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.e2e.conftest import MODEL_ID, AuthBridge, Process

pytestmark = pytest.mark.e2e
CHAT = {"model": MODEL_ID, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


def log_lines_once_logged(process: Process, request_id: str, timeout: float = 10.0) -> list[str]:
    """The log's lines once a line of `request_id` is in it (the bridge may log a request after answering it)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = process.log.read_text(errors="replace").splitlines()
        if any(request_id in line for line in lines):
            return lines
        if time.monotonic() >= deadline:
            pytest.fail(f"no log line of request {request_id} after {timeout} s:\n{process.tail()}")
        time.sleep(0.05)


def test_api_keys_never_logged_nor_echoed(auth_bridge: AuthBridge) -> None:
    url = f"{auth_bridge.base_url}/v1/chat/completions"
    wrong = "sk-ortserve-WRONGKEY-" + "z" * 24
    refused = httpx.post(url, json=CHAT, headers={"Authorization": f"Bearer {wrong}"}, timeout=30)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
    assert "WRONGKEY" not in refused.text
    malformed = httpx.post(url, json=CHAT, headers={"Authorization": f"Basic {wrong}"}, timeout=30)
    assert malformed.status_code == 401 and "WRONGKEY" not in malformed.text
    accepted = httpx.post(url, json=CHAT, headers={"Authorization": f"Bearer {auth_bridge.key}"}, timeout=60)
    assert accepted.status_code == 200
    # the accepted request came last: once its line is in the file, so are the refused ones'
    log = "\n".join(log_lines_once_logged(auth_bridge.process, accepted.headers["x-request-id"]))
    assert "WRONGKEY" not in log
    assert auth_bridge.key not in log and auth_bridge.key[len("sk-ortserve-") :] not in log


@pytest.mark.parametrize("given", ["a" * 500, 'x" "level": "CRITICAL', "id with spaces", "tab\tin-id"])
def test_unsafe_request_ids_never_reach_the_log(auth_bridge: AuthBridge, given: str) -> None:
    headers = {"Authorization": f"Bearer {auth_bridge.key}", "x-request-id": given}
    response = httpx.post(f"{auth_bridge.base_url}/v1/chat/completions", json=CHAT, headers=headers, timeout=60)
    assert response.status_code == 200
    chosen = response.headers["x-request-id"]
    assert chosen != given and len(chosen) == 32
    lines = log_lines_once_logged(auth_bridge.process, chosen)
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert any(record["request_id"] == chosen for record in records)
    assert all(given not in line for line in lines)
