"""`python -m http_bridge keys create|list|revoke|update` and `… usage`: the key file format and its editing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from http_bridge.__main__ import main
from http_bridge.accounts.counters import UsageRow, utc_day
from http_bridge.accounts.failover_counters import open_redis
from http_bridge.accounts.keys import KeyFileError, KeyRecord, KeyStore, hash_key, read_key_records
from http_bridge.accounts.redis_counters import RedisCounters
from tests.redis_server import RedisServer, redis_server

__all__ = ["redis_server"]


def create(path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    main(["keys", "create", "--file", str(path), *args])
    return capsys.readouterr().out.strip()


def test_create_with_attributes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "keys.jsonl"
    key = create(
        path,
        capsys,
        "--name",
        "acme",
        "--models",
        "a,b",
        "--rpm",
        "60",
        "--tpm",
        "1000",
        "--expires",
        "2099-01-01",
        "--admin",
    )
    (record,) = read_key_records(path)
    assert record.sha256 == hash_key(key) and record.name == "acme" and record.models == ("a", "b")
    assert (record.rpm, record.tpm, record.expires, record.admin) == (60, 1000, 4070908800, True)
    assert key not in path.read_text()


def test_list_shows_attributes_never_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "keys.jsonl"
    key = create(path, capsys, "--name", "acme", "--rpm", "5")
    main(["keys", "list", "--file", str(path), "--json"])
    out = capsys.readouterr().out
    shown = json.loads(out)
    assert shown["name"] == "acme" and shown["rpm"] == 5 and shown["models"] == "*"
    assert key not in out and hash_key(key) not in out


def test_update_and_revoke_change_only_what_is_asked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "keys.jsonl"
    path.write_text("# legacy lines stay\n" + "a" * 64 + "\n")
    create(path, capsys, "--name", "acme", "--rpm", "5", "--models", "m")
    main(["keys", "update", "--file", str(path), "--name", "acme", "--tpm", "100", "--rpm", "0"])
    record = read_key_records(path)[1]
    assert (record.rpm, record.tpm, record.models, record.disabled) == (None, 100, ("m",), False)
    main(["keys", "update", "--file", str(path), "--name", "acme", "--models", "*"])
    assert read_key_records(path)[1].models is None
    main(["keys", "revoke", "--file", str(path), "--name", "acme"])
    records = read_key_records(path)
    assert records[0] == KeyRecord(sha256="a" * 64) and records[1].disabled
    main(["keys", "update", "--file", str(path), "--name", "acme", "--no-disabled"])
    assert not read_key_records(path)[1].disabled


@pytest.mark.parametrize(
    "argv",
    [
        ["create", "--name", "dup"],
        ["update", "--name", "nobody", "--rpm", "1"],
        ["revoke", "--name", "nobody"],
        ["create", "--rpm", "-1"],
        ["create", "--tpm", "many"],
        ["create", "--expires", "someday"],
    ],
)
def test_bad_commands_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    path = tmp_path / "keys.jsonl"
    create(path, capsys, "--name", "dup")
    with pytest.raises(SystemExit) as caught:
        main(["keys", argv[0], "--file", str(path), *argv[1:]])
    assert caught.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "line",
    [
        '{"sha256": "%s", "rpm": -1}',
        '{"sha256": "%s", "rpm": "10"}',
        '{"sha256": "%s", "models": "a"}',
        '{"sha256": "%s", "disabled": "yes"}',
        '{"sha256": "%s", "name": 3}',
    ],
)
def test_bad_attributes_name_the_line(tmp_path: Path, line: str) -> None:
    path = tmp_path / "keys"
    path.write_text("\n" + line % ("b" * 64) + "\n")
    with pytest.raises(KeyFileError, match="keys:2"):
        KeyStore.build(key_file=path)


def test_legacy_lines_and_plain_keys_have_no_limits(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("c" * 64 + "\n" + json.dumps({"sha256": "d" * 64, "name": "old"}) + "\n")
    store = KeyStore.build(["dev"], path)
    assert [r.label for r in store.records] == ["unnamed", "unnamed", "old"]
    assert not any(r.limited or r.models is not None or r.admin for r in store.records)


def test_usage_command_reads_redis(
    redis_server: RedisServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def seed() -> None:
        client = open_redis(redis_server.url, 1.0)
        await RedisCounters(client).add_usage([UsageRow(utc_day(), "acme", "m", 2, 30, 40)])
        await client.aclose()

    asyncio.run(seed())
    monkeypatch.setenv("ORTSERVE_BRIDGE_REDIS_URL", redis_server.url)
    main(["usage", "--json"])
    page = json.loads(capsys.readouterr().out)
    result = page["data"][0]["results"][0]
    assert (result["api_key_name"], result["num_model_requests"], result["input_tokens"]) == ("acme", 2, 30)
    main(["usage"])
    assert "acme" in capsys.readouterr().out
    with pytest.raises(SystemExit) as caught:
        main(["usage", "--start-date", "nope"])
    assert caught.value.code == 2


def test_usage_command_without_redis(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORTSERVE_BRIDGE_REDIS_URL", raising=False)
    with pytest.raises(SystemExit) as caught:
        main(["usage"])
    assert caught.value.code == 2 and "GET /v1/usage" in capsys.readouterr().err
    with pytest.raises(SystemExit) as caught:
        main(["usage", "--redis-url", "redis://127.0.0.1:1/0"])
    assert caught.value.code == 1 and "cannot read usage" in capsys.readouterr().err
