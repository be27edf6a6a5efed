from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from http_bridge.__main__ import load_settings, parse_args
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


def test_every_field_has_a_description_for_its_help() -> None:
    assert [name for name, field in BridgeSettings.model_fields.items() if not field.description] == []


def test_the_flags_the_bridge_always_took(tmp_path: Path) -> None:
    ca, cert, key = (str(tmp_path / name) for name in ("ca.pem", "c.pem", "k.pem"))
    settings = load_settings(
        [
            *("--host", "0.0.0.0", "--port", "0", "--inference-target", "dns:///inference:50051"),
            *("--model-routes", '{"a": "h1:1"}', "--model-routes-file", "routes.json"),
            *("--load-balancing", "pick_first", "--no-health-check", "--tls"),
            *("--tls-ca-file", ca, "--tls-cert-file", cert, "--tls-key-file", key, "--tls-server-name", "svc"),
            *("--ssl-certfile", cert, "--ssl-keyfile", key, "--api-keys-file", "keys.txt"),
            *("--request-timeout-s", "9.5", "--first-message-timeout-s", "3", "--health-timeout-s", "1"),
            *("--max-body-bytes", "2048", "--max-messages", "2", "--max-message-chars", "3"),
            *("--max-stop-sequences", "0", "--max-stop-chars", "5", "--max-choices", "6"),
            *("--cors-allow-origins", "https://a,https://b", "--log-level", "warning", "--log-format", "text"),
        ]
    )
    assert (settings.host, settings.port, settings.inference_target) == ("0.0.0.0", 0, "dns:///inference:50051")
    assert (settings.model_routes, settings.model_routes_file) == ({"a": "h1:1"}, Path("routes.json"))
    assert (settings.load_balancing, settings.health_check, settings.tls) == ("pick_first", False, True)
    assert (settings.tls_ca_file, settings.tls_cert_file, settings.tls_key_file) == (Path(ca), Path(cert), Path(key))
    assert (settings.tls_server_name, settings.ssl_certfile, settings.ssl_keyfile) == ("svc", Path(cert), Path(key))
    assert settings.api_keys_file == Path("keys.txt")
    assert (settings.request_timeout_s, settings.first_message_timeout_s, settings.health_timeout_s) == (9.5, 3, 1)
    limits = (settings.max_body_bytes, settings.max_messages, settings.max_message_chars, settings.max_choices)
    assert limits == (2048, 2, 3, 6) and (settings.max_stop_sequences, settings.max_stop_chars) == (0, 5)
    assert settings.cors_allow_origins == ["https://a", "https://b"]
    assert (settings.log_level, settings.log_format) == ("WARNING", "text")


@pytest.mark.parametrize(
    ("argv", "health_check", "tls"),
    [([], True, False), (["--health-check", "--no-tls"], True, False), (["--no-health-check", "--tls"], False, True)],
)
def test_boolean_flag_pairs(argv: list[str], health_check: bool, tls: bool) -> None:
    settings = load_settings(argv)
    assert (settings.health_check, settings.tls) == (health_check, tls)


def test_a_routes_flag_replaces_the_environment_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORTSERVE_BRIDGE_MODEL_ROUTES", '{"env": "h0:1"}')
    assert load_settings([]).model_routes == {"env": "h0:1"}
    assert load_settings(["--model-routes", '{"flag": "h1:1"}']).model_routes == {"flag": "h1:1"}


def test_api_keys_stay_off_the_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORTSERVE_BRIDGE_API_KEYS", "k1,k2")
    assert "api_keys" not in vars(parse_args([]))
    assert load_settings(["--port", "1"]).api_keys == ["k1", "k2"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "http"], "--port (ORTSERVE_BRIDGE_PORT): Input should be a valid integer"),
        (["--log-level", "loud"], "--log-level (ORTSERVE_BRIDGE_LOG_LEVEL): Input should be 'CRITICAL'"),
        (["--load-balancing", "random"], "--load-balancing (ORTSERVE_BRIDGE_LOAD_BALANCING): Input should be"),
        (["--model-routes", "{"], "--model-routes (ORTSERVE_BRIDGE_MODEL_ROUTES): Value error"),
        (["--tls-cert-file", "c.pem"], "tls_cert_file and tls_key_file go together"),
    ],
)
def test_a_wrong_value_exits_2_without_a_traceback(argv: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "http_bridge", *argv], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("ortserve-bridge: error: invalid settings: ") and message in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("value", ["0", "a while", "1.5"])
def test_a_wrong_keep_alive_exits_2_naming_the_flag(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        load_settings(["--timeout-keep-alive-s", value])
    assert exc.value.code == 2 and "--timeout-keep-alive-s" in capsys.readouterr().err


def test_log_format_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings([]).log_format == "json"
    assert load_settings(["--log-format", "text"]).log_format == "text"
    with pytest.raises(SystemExit):
        load_settings(["--log-format", "xml"])
