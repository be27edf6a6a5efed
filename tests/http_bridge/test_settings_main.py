from __future__ import annotations

import pytest

from http_bridge.__main__ import load_settings
from http_bridge.settings import BridgeSettings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = BridgeSettings(_env_file=None)
    assert (settings.host, settings.port, settings.inference_target) == ("127.0.0.1", 8000, "127.0.0.1:50051")
    assert settings.api_keys == []
    assert settings.log_level == "INFO"


@pytest.mark.parametrize(("raw", "keys"), [("a,b", ["a", "b"]), ('["x", "y"]', ["x", "y"]), ("", [])])
def test_api_keys_from_env(monkeypatch: pytest.MonkeyPatch, raw: str, keys: list[str]) -> None:
    monkeypatch.setenv("ORTSERVE_BRIDGE_API_KEYS", raw)
    assert BridgeSettings(_env_file=None).api_keys == keys


def test_keys_not_in_repr() -> None:
    assert "secret" not in repr(BridgeSettings(_env_file=None, api_keys=["secret"]))


def test_cli_overrides_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORTSERVE_BRIDGE_PORT", "9000")
    monkeypatch.setenv("ORTSERVE_BRIDGE_HOST", "0.0.0.0")
    settings = load_settings(["--inference-target", "10.0.0.1:6000", "--port", "8123", "--log-level", "debug"])
    assert (settings.inference_target, settings.port, settings.host) == ("10.0.0.1:6000", 8123, "0.0.0.0")
    assert settings.log_level == "DEBUG"
