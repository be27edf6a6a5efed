"""Per-key limits, usage and model access across two real bridge processes sharing one real redis-server, on the
real inference service and default model."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from tests.e2e.conftest import MODEL_ID, Process, Stack, free_port, start, wait_until
from tests.redis_server import RedisServer

WINDOW_S = 4.0
RELOAD_S = 0.5
BODY = {"model": MODEL_ID, "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 2}


@dataclass
class Shared:
    redis: RedisServer
    keys_file: Path
    bridges: list[str]
    processes: list[Process]
    admin: str


def make_key(keys_file: Path, name: str, *flags: str) -> str:
    argv = [sys.executable, "-m", "http_bridge", "keys", "create", "--file", str(keys_file), "--name", name, *flags]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()


def keys_cli(keys_file: Path, *argv: str) -> None:
    subprocess.run([sys.executable, "-m", "http_bridge", "keys", *argv, "--file", str(keys_file)], check=True)


@pytest.fixture(scope="module")
def shared(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    folder = tmp_path_factory.mktemp("ratelimits")
    redis = RedisServer(folder / "redis")
    keys_file = folder / "keys.jsonl"
    admin = make_key(keys_file, "ops", "--admin")
    processes, bases = [], []
    try:
        for i in range(2):
            port = free_port()
            args = ["-m", "http_bridge", "--inference-target", stack.grpc_target, "--port", str(port)]
            args += [
                "--api-keys-file",
                str(keys_file),
                "--redis-url",
                redis.url,
                "--rate-limit-window-s",
                str(WINDOW_S),
            ]
            args += ["--keys-reload-interval-s", str(RELOAD_S), "--redis-timeout-s", "0.2", "--redis-retry-s", "0.5"]
            processes.append(start(f"bridge-{i}", args, folder))
            bases.append(f"http://127.0.0.1:{port}")
        for base, process in zip(bases, processes, strict=True):
            wait_until(ready(base), process)
        yield Shared(redis, keys_file, bases, processes, admin)
    finally:
        for process in processes:
            process.stop()
        redis.stop()


def ready(base: str) -> Callable[[], bool]:
    return lambda: httpx.get(f"{base}/health/ready", timeout=2).status_code == 200


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def chat(base: str, key: str, **extra: object) -> httpx.Response:
    return httpx.post(f"{base}/v1/chat/completions", json={**BODY, **extra}, headers=auth(key), timeout=60)


def fresh_window(base: str, key: str, needed_s: float = 2.5) -> None:
    """Wait for a window with `needed_s` left, so a short sequence of requests stays in one window."""
    reset = httpx.get(f"{base}/v1/models", headers=auth(key), timeout=10).headers["x-ratelimit-reset-requests"]
    left = float(reset.removesuffix("s"))
    if left < needed_s:
        time.sleep(left + 0.05)


def usage_of(base: str, admin: str, name: str) -> list[int]:
    page = httpx.get(f"{base}/v1/usage", params={"api_key_name": name}, headers=auth(admin), timeout=10).json()
    results = [r for bucket in page["data"] for r in bucket["results"]]
    return [sum(r[f] for r in results) for f in ("num_model_requests", "input_tokens", "output_tokens")]


def test_two_bridges_enforce_one_limit_headers_count_down_and_reset(shared: Shared) -> None:
    key = make_key(shared.keys_file, "team-a", "--rpm", "4", "--tpm", "100000")
    time.sleep(RELOAD_S + 0.2)
    first, second = shared.bridges
    fresh_window(first, key)
    responses = [chat(base, key) for base in (first, second, first, second, first, second)]
    assert [r.status_code for r in responses] == [200, 200, 200, 200, 429, 429]
    assert [r.headers["x-ratelimit-remaining-requests"] for r in responses[:4]] == ["3", "2", "1", "0"]
    assert all(r.headers["x-ratelimit-limit-requests"] == "4" for r in responses)
    assert all(r.headers["x-ratelimit-limit-tokens"] == "100000" for r in responses)
    refused = responses[-1]
    assert 1 <= int(refused.headers["retry-after"]) <= WINDOW_S
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    time.sleep(float(refused.headers["x-ratelimit-reset-requests"].removesuffix("s")) + 0.05)
    again = chat(second, key)
    assert again.status_code == 200 and again.headers["x-ratelimit-remaining-requests"] == "3"


def test_streaming_and_disconnects_count_real_tokens(shared: Shared) -> None:
    key = make_key(shared.keys_file, "streamer", "--tpm", "100000")
    time.sleep(RELOAD_S + 0.2)
    first, second = shared.bridges
    sent = [0, 0, 0]
    for base in (first, second):
        body = {**BODY, "stream": True, "stream_options": {"include_usage": True}, "max_tokens": 6}
        with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, headers=auth(key), timeout=60) as r:
            events = [line.removeprefix("data: ") for line in r.iter_lines() if line.startswith("data: ")]
        usage = json.loads(events[-2])["usage"]
        sent = [sent[0] + 1, sent[1] + usage["prompt_tokens"], sent[2] + usage["completion_tokens"]]
    response = chat(first, key, max_tokens=5)
    usage = response.json()["usage"]
    sent = [sent[0] + 1, sent[1] + usage["prompt_tokens"], sent[2] + usage["completion_tokens"]]
    assert usage_of(second, shared.admin, "streamer") == sent
    # A client that leaves after the first content chunk: the tokens generated until the cancel are charged.
    body = {**BODY, "stream": True, "max_tokens": 400, "messages": [{"role": "user", "content": "Write a long story"}]}
    with httpx.stream("POST", f"{second}/v1/chat/completions", json=body, headers=auth(key), timeout=60) as r:
        for line in r.iter_lines():
            if '"content":"' in line and '"content":""' not in line:
                break
    deadline = time.monotonic() + 10
    while usage_of(first, shared.admin, "streamer")[0] != sent[0] + 1:
        assert time.monotonic() < deadline, "the disconnected stream was never charged"
        time.sleep(0.2)
    _, prompt, completion = usage_of(first, shared.admin, "streamer")
    assert prompt > sent[1] and 1 <= completion - sent[2] < 400


def test_usage_command_matches_the_endpoint(shared: Shared) -> None:
    key = make_key(shared.keys_file, "cli-user")
    time.sleep(RELOAD_S + 0.2)
    usage = chat(shared.bridges[0], key).json()["usage"]
    time.sleep(0.3)
    env = {"ORTSERVE_BRIDGE_REDIS_URL": shared.redis.url, "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-m", "http_bridge", "usage", "--json", "--api-key-name", "cli-user"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    (result,) = json.loads(out)["data"][0]["results"]
    assert (result["num_model_requests"], result["input_tokens"], result["output_tokens"]) == (
        1,
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
    user = httpx.get(f"{shared.bridges[1]}/v1/usage", headers=auth(key), timeout=10)
    assert user.status_code == 403


def test_hot_reload_create_restrict_revoke(shared: Shared) -> None:
    first, second = shared.bridges
    key = make_key(shared.keys_file, "hot")
    bound = RELOAD_S + 1.0  # the reload interval, plus slack for the stat and the read on a busy machine

    def within_bound(check: Callable[[], bool]) -> None:
        deadline = time.monotonic() + bound
        while not check():
            assert time.monotonic() < deadline, f"not in force within {bound} s"
            time.sleep(0.05)

    within_bound(lambda: chat(first, key).status_code == 200 and chat(second, key).status_code == 200)
    keys_cli(shared.keys_file, "update", "--name", "hot", "--models", "another-model")
    within_bound(lambda: chat(first, key).status_code == 404 and chat(second, key).status_code == 404)
    listed = httpx.get(f"{first}/v1/models", headers=auth(key), timeout=10).json()["data"]
    assert listed == []
    keys_cli(shared.keys_file, "revoke", "--name", "hot")
    within_bound(lambda: chat(first, key).status_code == 401 and chat(second, key).status_code == 401)


def test_redis_killed_mid_load_and_restarted(shared: Shared) -> None:
    key = make_key(shared.keys_file, "loader", "--rpm", "100000")
    time.sleep(RELOAD_S + 0.2)
    statuses: list[int] = []
    stop = threading.Event()

    def load(base: str) -> None:
        while not stop.is_set():
            try:
                statuses.append(chat(base, key, max_tokens=1).status_code)
            except httpx.HTTPError:
                statuses.append(-1)

    threads = [threading.Thread(target=load, args=(base,)) for base in shared.bridges for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        shared.redis.kill()
        time.sleep(2.0)
        served_while_down = len(statuses)
        shared.redis.start()
        time.sleep(2.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert statuses and set(statuses) == {200}, sorted(set(statuses))  # fail open: no 500, no 503, no hang
    assert len(statuses) > served_while_down
    for base in shared.bridges:
        metrics = httpx.get(f"{base}/metrics", timeout=10).text
        assert "ortserve_bridge_counter_store_shared 1.0" in metrics  # recovered by itself
        assert "ortserve_bridge_counter_store_errors_total" in metrics
    assert usage_of(shared.bridges[0], shared.admin, "loader")[0] > 0  # usage written to the restarted Redis


def test_openai_client_sees_rate_limit_error(shared: Shared) -> None:
    key = make_key(shared.keys_file, "sdk", "--rpm", "1")
    time.sleep(RELOAD_S + 0.2)
    fresh_window(shared.bridges[0], key)
    client = openai.OpenAI(api_key=key, base_url=f"{shared.bridges[0]}/v1", max_retries=0)
    client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "hi"}], max_tokens=1)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "hi"}], max_tokens=1)
    assert caught.value.code == "rate_limit_exceeded"
    assert isinstance(caught.value.body, dict) and "Rate limit reached" in str(caught.value.body["message"])
    assert caught.value.response.headers["x-ratelimit-remaining-requests"] == "0"
