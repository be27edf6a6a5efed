"""deploy/kubernetes: every overlay rendered by the real kustomize, validated against the Kubernetes API schemas,
and held to the contract of the code (settings, health service names, routes) and of docker-compose.yml.

No cluster is needed: kustomize only renders, kubernetes-validate checks the objects offline.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from http_bridge.app import create_app
from http_bridge.settings import BridgeSettings
from inference_service.server.app import SERVICE_NAMES
from inference_service.server.settings import ServiceSettings
from tests.deploy.kubernetes import (
    KUBERNETES_DIR,
    KUBERNETES_VERSIONS,
    OVERLAYS,
    Obj,
    bridge_settings,
    build_with_components,
    compose_defaults,
    container,
    effective_env,
    environment,
    find,
    image_user,
    kustomize_build,
    manifest_env,
    named_port,
    pod_labels,
    selects,
    set_at,
)
from tests.deploy.parsing import ROOT

READY_SERVICE = "inference_service.api.v1.GenerationService"
LIVE_SERVICE = ""  # grpc.health.v1: the empty name is the server as a whole
TARGET = re.compile(r"dns:///(?P<host>[a-z0-9.-]+):(?P<port>\d+)$")
# deliberate differences from docker-compose.yml's defaults (docs/deployment.md#kubernetes says why)
K8S_ONLY_VALUES = {"ORTSERVE_SHUTDOWN_GRACE_S", "ORTSERVE_THREADS"}


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[Obj]]:
    return request.param, kustomize_build(KUBERNETES_DIR / "overlays" / request.param)


@pytest.fixture(scope="module")
def with_components(tmp_path_factory: pytest.TempPathFactory) -> list[Obj]:
    return build_with_components("gpu", tmp_path_factory.mktemp("overlay"))


def inference_settings(objs: list[Obj]) -> ServiceSettings:
    with environment(effective_env(container(find(objs, "Deployment", "inference"), "inference"))):
        return ServiceSettings()


def pre_stop_seconds(c: Obj) -> int:
    seconds: int = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    return seconds


# --- the contract checks, as functions so that the mutation tests below can prove each one fails -----------------


def check_inference_probes(objs: list[Obj]) -> None:
    inference = container(find(objs, "Deployment", "inference"), "inference")
    settings = inference_settings(objs)
    assert named_port(inference, "grpc") == settings.port
    assert named_port(inference, "metrics") == settings.metrics_port != 0
    probes = {kind: inference[f"{kind}Probe"]["grpc"] for kind in ("startup", "liveness", "readiness")}
    for kind, probe in probes.items():
        assert named_port(inference, probe["port"]) == settings.port, kind
    assert probes["readiness"]["service"] == READY_SERVICE
    assert READY_SERVICE in SERVICE_NAMES  # the name the server sets per service (inference_service.server.app)
    assert probes["startup"]["service"] == probes["liveness"]["service"] == LIVE_SERVICE


def check_headless_service(objs: list[Obj]) -> None:
    service = find(objs, "Service", "inference")
    deployment = find(objs, "Deployment", "inference")
    assert service["spec"]["clusterIP"] == "None"
    assert not service["spec"].get("publishNotReadyAddresses", False)
    assert selects(service["spec"]["selector"], pod_labels(deployment))
    assert not selects(service["spec"]["selector"], pod_labels(find(objs, "Deployment", "bridge")))
    grpc = next(p for p in service["spec"]["ports"] if p["name"] == "grpc")
    # headless: clients dial the pod's port itself, so the Service port must be the container's
    assert grpc["port"] == named_port(container(deployment, "inference"), grpc["targetPort"])


def check_bridge_target(objs: list[Obj]) -> None:
    settings = bridge_settings(objs)
    assert settings.load_balancing == "round_robin" and settings.health_check
    match = TARGET.match(settings.inference_target)
    assert match, settings.inference_target
    service = find(objs, "Service", "inference")
    # a short name resolves through the pod's DNS search path, so both must be in one namespace
    assert match["host"] == service["metadata"]["name"]
    assert service["metadata"]["namespace"] == find(objs, "Deployment", "bridge")["metadata"]["namespace"]
    assert int(match["port"]) == inference_settings(objs).port


def check_grace_periods(objs: list[Obj]) -> None:
    deployment = find(objs, "Deployment", "inference")
    inference = container(deployment, "inference")
    drain = inference_settings(objs).shutdown_grace_s
    pre_stop = pre_stop_seconds(inference)
    # after preStop, SIGTERM starts the drain; then `server.stop(1.0)` (inference_service.server.app)
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > pre_stop + drain + 1
    # draining turns "" NOT_SERVING too: the liveness probe must not kill a draining pod before it is done
    liveness = inference["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] > drain
    bridge = find(objs, "Deployment", "bridge")
    timeout = bridge_settings(objs).request_timeout_s
    assert bridge["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= timeout + pre_stop_seconds(
        container(bridge, "bridge")
    )


def check_bridge_probes(objs: list[Obj]) -> None:
    bridge = container(find(objs, "Deployment", "bridge"), "bridge")
    settings = bridge_settings(objs)
    paths = {path for path, methods in create_app(BridgeSettings()).openapi()["paths"].items() if "get" in methods}
    for kind in ("liveness", "readiness"):
        probe = bridge[f"{kind}Probe"]["httpGet"]
        assert probe["path"] in paths, f"{kind}: {probe['path']} is not a route of the bridge"
        assert named_port(bridge, probe["port"]) == settings.port
    assert bridge["readinessProbe"]["httpGet"]["path"] == "/health/ready"


CHECKS: list[Callable[[list[Obj]], None]] = [
    check_inference_probes,
    check_headless_service,
    check_bridge_target,
    check_grace_periods,
    check_bridge_probes,
]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_contract(overlay: tuple[str, list[Obj]], check: Callable[[list[Obj]], None]) -> None:
    check(overlay[1])


INFERENCE = "Deployment/inference/spec/template/spec/containers.inference"
MUTATIONS = {
    "readiness probe port": (check_inference_probes, set_at(f"{INFERENCE}/readinessProbe/grpc/port", 50052)),
    "readiness on liveness": (check_inference_probes, set_at(f"{INFERENCE}/readinessProbe/grpc/service", "")),
    "liveness service": (check_inference_probes, set_at(f"{INFERENCE}/livenessProbe/grpc/service", READY_SERVICE)),
    "port setting": (
        check_inference_probes,
        set_at(f"{INFERENCE}/env", [{"name": "ORTSERVE_PORT", "value": "50052"}]),
    ),
    "not headless": (check_headless_service, set_at("Service/inference/spec/clusterIP", "10.0.0.1")),
    "selector": (check_headless_service, set_at("Service/inference/spec/selector", {"app.kubernetes.io/name": "x"})),
    "target host": (
        check_bridge_target,
        set_at(
            "Deployment/bridge/spec/template/spec/containers.bridge/env",
            [{"name": "ORTSERVE_BRIDGE_INFERENCE_TARGET", "value": "dns:///bridge:50051"}],
        ),
    ),
    "grace period": (
        check_grace_periods,
        set_at("Deployment/inference/spec/template/spec/terminationGracePeriodSeconds", 30),
    ),
    "liveness kills drain": (check_grace_periods, set_at(f"{INFERENCE}/livenessProbe/failureThreshold", 3)),
    "bridge probe path": (
        check_bridge_probes,
        set_at("Deployment/bridge/spec/template/spec/containers.bridge/livenessProbe/httpGet/path", "/healthz"),
    ),
}


@pytest.mark.parametrize("name", MUTATIONS)
def test_each_contract_check_fails_on_a_broken_manifest(overlay: tuple[str, list[Obj]], name: str) -> None:
    check, mutate = MUTATIONS[name]
    objs = copy.deepcopy(overlay[1])
    mutate(objs)
    with pytest.raises(AssertionError):
        check(objs)


# --- schemas ----------------------------------------------------------------------------------------------------


def validate(obj: Obj, version: str) -> None:
    kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_matches_the_kubernetes_api_schema(overlay: tuple[str, list[Obj]], version: str) -> None:
    for obj in overlay[1]:
        validate(obj, version)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_components_match_the_schemas(with_components: list[Obj], version: str) -> None:
    for obj in with_components:
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD: not in the Kubernetes schemas (test_service_monitors_scrape_real_ports)
        validate(obj, version)


def test_schema_validation_rejects_a_misspelt_field(overlay: tuple[str, list[Obj]]) -> None:
    deployment = copy.deepcopy(find(overlay[1], "Deployment", "inference"))
    probe = container(deployment, "inference")
    probe["readinesProbe"] = probe.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment, KUBERNETES_VERSIONS[-1])


def test_overlays_render_the_same_objects(overlay: tuple[str, list[Obj]]) -> None:
    names = sorted((o["kind"], o["metadata"]["name"]) for o in overlay[1])
    assert names == [
        ("Deployment", "bridge"),
        ("Deployment", "inference"),
        ("HorizontalPodAutoscaler", "bridge"),
        ("Namespace", "ortserve"),
        ("NetworkPolicy", "inference"),
        ("NetworkPolicy", "redis"),
        ("PodDisruptionBudget", "bridge"),
        ("PodDisruptionBudget", "inference"),
        ("Service", "bridge"),
        ("Service", "inference"),
        ("Service", "redis"),
        ("StatefulSet", "redis"),
    ]
    # no Secret is rendered: the API keys are the operator's, never committed
    assert all(o["metadata"].get("namespace", "ortserve") == "ortserve" for o in overlay[1])


# --- docker-compose.yml parity ------------------------------------------------------------------------------------


def test_images_are_the_compose_images(overlay: tuple[str, list[Obj]], compose: dict[str, Any]) -> None:
    name, objs = overlay
    services = compose_defaults(compose)
    inference = find(objs, "Deployment", "inference")
    variant = "inference" if name == "gpu" else "inference-cpu"
    assert container(inference, "inference")["image"] == services[variant]["image"]
    assert container(inference, "model-init", init=True)["image"] == services["model-init"]["image"]
    assert container(find(objs, "Deployment", "bridge"), "bridge")["image"] == services["bridge"]["image"]


def test_environment_is_the_compose_environment(overlay: tuple[str, list[Obj]], compose: dict[str, Any]) -> None:
    name, objs = overlay
    services = compose_defaults(compose)
    variant = "inference" if name == "gpu" else "inference-cpu"
    inference = find(objs, "Deployment", "inference")
    pairs = [
        (services[variant]["environment"], manifest_env(container(inference, "inference"))),
        (services["model-init"]["environment"], manifest_env(container(inference, "model-init", init=True))),
        (services["bridge"]["environment"], manifest_env(container(find(objs, "Deployment", "bridge"), "bridge"))),
    ]
    for compose_env, k8s_env in pairs:
        ours = {k: v for k, v in k8s_env.items() if k.startswith("ORTSERVE_")}
        assert set(ours) == set(compose_env)
        differ = {k for k in ours if str(compose_env[k]) != ours[k]}
        assert differ <= K8S_ONLY_VALUES, differ


def test_environment_names_are_real_settings(overlay: tuple[str, list[Obj]]) -> None:
    inference_fields = {f"ORTSERVE_{name.upper()}" for name in ServiceSettings.model_fields}
    bridge_fields = {f"ORTSERVE_BRIDGE_{name.upper()}" for name in BridgeSettings.model_fields}
    for deployment in (o for o in overlay[1] if o["kind"] == "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        for c in pod.get("initContainers", []) + pod["containers"]:
            fields = bridge_fields if c["name"] == "bridge" else inference_fields
            unknown = {k for k in manifest_env(c) if k.startswith("ORTSERVE_") and k not in fields}
            assert not unknown, f"{c['name']}: {unknown}"


def test_overlays_pick_the_device(overlay: tuple[str, list[Obj]]) -> None:
    name, objs = overlay
    inference = container(find(objs, "Deployment", "inference"), "inference")
    settings = inference_settings(objs)
    gpus = inference["resources"].get("limits", {}).get("nvidia.com/gpu")
    if name == "gpu":
        assert settings.device == "cuda" and gpus == 1
        assert settings.model.endswith("-fp16")  # the CUDA EP's attention has fp16/bf16 kernels only
        assert inference["image"].endswith("-gpu")
    else:
        assert settings.device == "cpu" and gpus is None
        # ONNX Runtime counts the node's cores: one thread per CPU of the pod's limit
        assert settings.threads == int(inference["resources"]["limits"]["cpu"])


def test_model_init_writes_the_folder_inference_reads(overlay: tuple[str, list[Obj]]) -> None:
    deployment = find(overlay[1], "Deployment", "inference")
    init = container(deployment, "model-init", init=True)
    inference = container(deployment, "inference")
    cache = effective_env(inference)["ORTSERVE_CACHE_DIR"]
    assert effective_env(init)["ORTSERVE_CACHE_DIR"] == cache
    mounts = {c["name"]: {m["name"]: m for m in c["volumeMounts"]} for c in (init, inference)}
    assert mounts["model-init"]["models"]["mountPath"] == mounts["inference"]["models"]["mountPath"] == cache
    assert not mounts["model-init"]["models"].get("readOnly", False)
    assert mounts["inference"]["models"]["readOnly"] is True
    assert inference_settings(overlay[1]).model.startswith(cache + "/")
    assert init["command"] == ["python", "/opt/ortserve/prepare_model.py"]
    assert (ROOT / "docker" / "prepare_model.py").is_file()


# --- security, networking, scaling ------------------------------------------------------------------------------


def test_pods_run_locked_down(overlay: tuple[str, list[Obj]]) -> None:
    for deployment in (o for o in overlay[1] if o["kind"] == "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for c in pod.get("initContainers", []) + pod["containers"]:
            uid, _, gid = image_user(c["image"]).partition(":")
            assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (int(uid), int(gid))
            context = c["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            assert "/tmp" in {m["mountPath"] for m in c["volumeMounts"]}  # the one writable scratch place


def test_only_the_bridge_reaches_the_grpc_port(overlay: tuple[str, list[Obj]]) -> None:
    objs = overlay[1]
    policy = find(objs, "NetworkPolicy", "inference")
    assert selects(policy["spec"]["podSelector"]["matchLabels"], pod_labels(find(objs, "Deployment", "inference")))
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    grpc_port = inference_settings(objs).port
    grpc_rules = [r for r in policy["spec"]["ingress"] if any(p["port"] == grpc_port for p in r.get("ports", []))]
    assert grpc_rules
    bridge_labels = pod_labels(find(objs, "Deployment", "bridge"))
    for rule in grpc_rules:
        assert rule["from"], "an empty `from` admits everyone"
        for peer in rule["from"]:
            assert set(peer) == {"podSelector"}, peer
            assert selects(peer["podSelector"]["matchLabels"], bridge_labels)
    assert all(r.get("ports") for r in policy["spec"]["ingress"]), "a rule without ports opens every port"


def test_api_keys_come_from_a_secret(overlay: tuple[str, list[Obj]]) -> None:
    deployment = find(overlay[1], "Deployment", "bridge")
    bridge = container(deployment, "bridge")
    keys_file = Path(bridge_settings(overlay[1]).api_keys_file or "")
    mount = next(m for m in bridge["volumeMounts"] if Path(m["mountPath"]) == keys_file.parent)
    volume = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["optional"] is False  # like compose: no keys, no bridge
    assert keys_file.name in {item["path"] for item in volume["secret"]["items"]}


def test_disruption_budgets_and_autoscalers_target_real_pods(with_components: list[Obj]) -> None:
    objs = with_components
    for name in ("inference", "bridge"):
        deployment = find(objs, "Deployment", name)
        pdb = find(objs, "PodDisruptionBudget", name)
        assert selects(pdb["spec"]["selector"]["matchLabels"], pod_labels(deployment))
        hpa = find(objs, "HorizontalPodAutoscaler", name)
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        assert hpa["spec"]["minReplicas"] >= 2  # with maxUnavailable 1, one pod always serves
        assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    bridge = container(find(objs, "Deployment", "bridge"), "bridge")
    assert bridge["resources"]["requests"]["cpu"]  # CPU utilization is relative to the request
    metric = find(objs, "HorizontalPodAutoscaler", "inference")["spec"]["metrics"][0]["pods"]["metric"]["name"]
    metrics_source = (ROOT / "inference_service" / "server" / "metrics.py").read_text()
    assert f'"{metric}"' in metrics_source, f"{metric} is not a metric the inference service exports"


def test_service_monitors_scrape_real_ports(with_components: list[Obj]) -> None:
    monitors = [o for o in with_components if o["kind"] == "ServiceMonitor"]
    assert {m["metadata"]["name"] for m in monitors} == {"inference", "bridge"}
    for monitor in monitors:
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["metadata"]["namespace"] == "ortserve"
        services = [
            s
            for s in with_components
            if s["kind"] == "Service" and selects(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])
        ]
        assert [s["metadata"]["name"] for s in services] == [monitor["metadata"]["name"]]
        port_names = {p["name"] for p in services[0]["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            assert set(endpoint) <= {"port", "path", "interval"}
            assert endpoint["port"] in port_names and endpoint["path"] == "/metrics"
