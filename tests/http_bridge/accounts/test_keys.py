"""API keys: hashed key files, the `keys create` CLI, auth on the app, and keys never leaking into logs/errors."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from http_bridge.__main__ import load_settings, main
from http_bridge.accounts.keys import KEY_PREFIX, KeyFileError, KeyStore, append_key, hash_key, read_key_records
from http_bridge.app import create_app
from http_bridge.settings import BridgeSettings
from tests.http_bridge.fakes import FakeClient

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def _hashes(path: Path) -> list[str]:
    """sha256 hex digests of a keys file (every line, whatever its attributes)."""
    return [record.sha256 for record in read_key_records(path)]


def test_append_key_stores_only_the_hash(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "keys.jsonl"
    first, second = append_key(path, "alice"), append_key(path)
    assert first.startswith(KEY_PREFIX) and len(first) > len(KEY_PREFIX) + 40
    assert first != second
    text = path.read_text()
    assert first not in text and second not in text
    records = [json.loads(line) for line in text.splitlines()]
    assert [r["sha256"] for r in records] == [hash_key(first), hash_key(second)]
    assert records[0]["name"] == "alice"
    assert _hashes(path) == [hash_key(first), hash_key(second)]


def test_bare_hex_lines_and_comments(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# ops keys\n\n{hash_key('a').upper()}\n{hash_key('b')}\n")
    store = KeyStore.build(key_file=path)
    assert store.find("a") is not None and store.find("b") is not None and store.find("c") is None


@pytest.mark.parametrize("line", ["sk-ortserve-plainkey", '{"name": "x"}', '{"sha256": "abc"}', "[1]", "{bad json"])
def test_malformed_line_is_reported_without_its_content(tmp_path: Path, line: str) -> None:
    path = tmp_path / "keys"
    path.write_text(f"{hash_key('a')}\n{line}\n")
    with pytest.raises(KeyFileError, match=r"keys:2") as caught:
        read_key_records(path)
    assert line not in str(caught.value)


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot read"):
        read_key_records(tmp_path / "nope")


def test_env_keys_and_file_keys_combine(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    from_file = append_key(path)
    store = KeyStore.build(["dev-key"], path)
    assert store.enabled and store.find(from_file) is not None and store.find("dev-key") is not None
    assert not KeyStore.build().enabled
    assert "dev-key" not in repr(store)


def test_cli_creates_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "keys.jsonl"
    main(["keys", "create", "--file", str(path), "--name", "ci"])
    out, err = capsys.readouterr()
    key = out.strip()
    assert key.startswith(KEY_PREFIX)
    assert "cannot be shown again" in err
    assert _hashes(path) == [hash_key(key)]
    assert key not in path.read_text()


def test_cli_needs_a_file() -> None:
    with pytest.raises(SystemExit):
        main(["keys", "create"])


def test_keys_file_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORTSERVE_BRIDGE_API_KEYS_FILE", str(tmp_path / "env-keys"))
    assert BridgeSettings(_env_file=None).api_keys_file == tmp_path / "env-keys"
    assert load_settings(["--api-keys-file", "/etc/k"]).api_keys_file == Path("/etc/k")


def test_bad_keys_file_stops_start_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("http_bridge.__main__.configure_logging", lambda *args: None)
    path = tmp_path / "keys"
    path.write_text("sk-ortserve-oops-a-plain-key\n")
    with pytest.raises(SystemExit) as caught:
        main(["--api-keys-file", str(path)])
    assert "keys:1" in str(caught.value.code)
    assert "oops" not in str(caught.value.code)


@pytest.fixture
def key_file(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "keys.jsonl"
    return path, append_key(path, "test")


@pytest.fixture
async def secured(key_file: tuple[Path, str]) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(BridgeSettings(_env_file=None, api_keys_file=key_file[0]), client=FakeClient())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bridge") as client:
        yield client


@pytest.mark.anyio
async def test_file_key_authenticates(
    secured: httpx.AsyncClient, key_file: tuple[Path, str], caplog: pytest.LogCaptureFixture
) -> None:
    _, key = key_file
    caplog.set_level(logging.DEBUG)
    ok = await secured.post(
        "/v1/completions", json={"model": "m", "prompt": "x"}, headers={"authorization": f"Bearer {key}"}
    )
    assert ok.status_code == 200
    wrong_key = key[:-4] + "xxxx"
    for headers in ({}, {"authorization": f"Bearer {wrong_key}"}, {"authorization": key}, {"authorization": "Bearer"}):
        denied = await secured.post("/v1/completions", json={"model": "m", "prompt": "x"}, headers=headers)
        assert denied.status_code == 401
        assert denied.headers["www-authenticate"] == "Bearer"
        error = denied.json()["error"]
        assert (error["type"], error["code"]) == ("authentication_error", "invalid_api_key")
        assert key not in denied.text and wrong_key not in denied.text
    assert (await secured.get("/health")).status_code == 200
    assert key not in caplog.text and wrong_key not in caplog.text


@pytest.mark.anyio
async def test_start_up_warns_when_auth_is_off(caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(BridgeSettings(_env_file=None), client=FakeClient())
    with caplog.at_level(logging.WARNING):
        async with app.router.lifespan_context(app):
            pass
    assert "authentication is off" in caplog.text
