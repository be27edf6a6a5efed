"""deploy/kubernetes: the Redis the bridge pods share for per-key limits and usage (StatefulSet, Service,
NetworkPolicy in the base), held to the bridge's settings and to docker-compose.yml's `redis` service; and the
external-redis component that replaces it with the operator's."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest

from tests.deploy.kubernetes import (
    EXTERNAL_REDIS,
    KUBERNETES_DIR,
    KUBERNETES_VERSIONS,
    OVERLAYS,
    Obj,
    bridge_settings,
    build_with_components,
    compose_defaults,
    container,
    find,
    kustomize_build,
    named_port,
    pod_labels,
    selects,
    set_at,
)
from tests.deploy.parsing import ROOT

# the redis:*-alpine images' `redis` user and group (docker-library/redis: addgroup -g 1000, adduser -u 999)
REDIS_UID, REDIS_GID = 999, 1000
DATA_DIR = "/data"  # the image's WORKDIR: the append-only file lives here
WORKLOADS = (("Deployment", "inference"), ("Deployment", "bridge"), ("StatefulSet", "redis"))
REDIS = "StatefulSet/redis/spec/template/spec/containers.redis"


@pytest.fixture(scope="module", params=OVERLAYS)
def objs(request: pytest.FixtureRequest) -> list[Obj]:
    return kustomize_build(KUBERNETES_DIR / "overlays" / request.param)


@pytest.fixture(scope="module")
def external(tmp_path_factory: pytest.TempPathFactory) -> list[Obj]:
    return build_with_components("gpu", tmp_path_factory.mktemp("external"), (EXTERNAL_REDIS,))


def redis_container(objs: list[Obj]) -> Obj:
    return container(find(objs, "StatefulSet", "redis"), "redis")


def exec_probe(c: Obj, kind: str) -> list[str]:
    command: list[str] = c[f"{kind}Probe"]["exec"]["command"]
    return command


# --- the contract checks, each proven to fail on a broken copy below --------------------------------------------


def check_bridge_url_names_the_service(objs: list[Obj]) -> None:
    url = urlsplit(bridge_settings(objs).redis_url or "")
    service = find(objs, "Service", "redis")
    statefulset = find(objs, "StatefulSet", "redis")
    assert url.scheme == "redis" and url.path == "/0", url.geturl()
    # a short name resolves through the pod's DNS search path: Service and bridge share a namespace
    assert url.hostname == service["metadata"]["name"]
    assert service["metadata"]["namespace"] == find(objs, "Deployment", "bridge")["metadata"]["namespace"]
    ports = [p for p in service["spec"]["ports"] if p["port"] == url.port]
    assert len(ports) == 1, f"the Service has no port {url.port}"
    assert named_port(redis_container(objs), ports[0]["targetPort"]) == 6379
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP" and "clusterIP" not in service["spec"]
    assert selects(service["spec"]["selector"], pod_labels(statefulset))
    for kind, name in WORKLOADS[:2]:
        assert not selects(service["spec"]["selector"], pod_labels(find(objs, kind, name))), name


def check_only_the_bridge_reaches_redis(objs: list[Obj]) -> None:
    policy = find(objs, "NetworkPolicy", "redis")
    assert selects(policy["spec"]["podSelector"]["matchLabels"], pod_labels(find(objs, "StatefulSet", "redis")))
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    port = named_port(redis_container(objs), "redis")
    labels = {name: pod_labels(find(objs, kind, name)) for kind, name in WORKLOADS}
    assert policy["spec"]["ingress"], "no rule: Redis unreachable for the bridge"
    for rule in policy["spec"]["ingress"]:
        assert [(p["port"], p["protocol"]) for p in rule.get("ports", [])] == [(port, "TCP")], rule
        assert rule.get("from"), "an empty `from` admits everyone"
        for peer in rule["from"]:
            assert set(peer) == {"podSelector"}, peer  # no namespaceSelector, no ipBlock: this namespace's pods
            admitted = {name for name, pod in labels.items() if selects(peer["podSelector"]["matchLabels"], pod)}
            assert admitted == {"bridge"}, admitted


def check_redis_probes(objs: list[Obj]) -> None:
    redis = redis_container(objs)
    for kind in ("startup", "liveness", "readiness"):
        assert exec_probe(redis, kind) == ["redis-cli", "ping"], kind  # the default port, inside the pod


def check_redis_persists(objs: list[Obj]) -> None:
    statefulset = find(objs, "StatefulSet", "redis")
    spec = statefulset["spec"]
    assert spec["replicas"] == 1  # one writer of the append-only file; no replication
    assert spec["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Retain"
    mounts = {m["mountPath"]: m["name"] for m in redis_container(objs)["volumeMounts"]}
    assert set(mounts) == {DATA_DIR}, mounts  # the only writable place (read-only root filesystem)
    claims = {t["metadata"]["name"]: t["spec"] for t in spec["volumeClaimTemplates"]}
    assert mounts[DATA_DIR] in claims, "/data is not on a PersistentVolumeClaim"
    assert claims[mounts[DATA_DIR]]["accessModes"] == ["ReadWriteOnce"]
    assert not any(v["name"] == mounts[DATA_DIR] for v in spec["template"]["spec"].get("volumes", []))


def check_redis_locked_down(objs: list[Obj]) -> None:
    pod = find(objs, "StatefulSet", "redis")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    context = pod["securityContext"]
    assert context["runAsNonRoot"] is True and context["seccompProfile"]["type"] == "RuntimeDefault"
    assert (context["runAsUser"], context["runAsGroup"], context["fsGroup"]) == (REDIS_UID, REDIS_GID, REDIS_GID)
    redis = redis_container(objs)
    assert redis["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert redis["resources"]["requests"]["memory"] and redis["resources"]["limits"]["memory"]


CHECKS: list[Callable[[list[Obj]], None]] = [
    check_bridge_url_names_the_service,
    check_only_the_bridge_reaches_redis,
    check_redis_probes,
    check_redis_persists,
    check_redis_locked_down,
]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_contract(objs: list[Obj], check: Callable[[list[Obj]], None]) -> None:
    check(objs)


def bridge_url(url: str) -> Callable[[list[Obj]], None]:
    return set_at(
        "Deployment/bridge/spec/template/spec/containers.bridge/env",
        [{"name": "ORTSERVE_BRIDGE_REDIS_URL", "value": url}],
    )


def ingress_from(peer: dict[str, Any]) -> Callable[[list[Obj]], None]:
    return set_at("NetworkPolicy/redis/spec/ingress", [{"from": [peer], "ports": [{"port": 6379, "protocol": "TCP"}]}])


BRIDGE_LABELS = {"app.kubernetes.io/name": "ortserve", "app.kubernetes.io/component": "bridge"}
MUTATIONS = {
    "url host": (check_bridge_url_names_the_service, bridge_url("redis://bridge:6379/0")),
    "url port": (check_bridge_url_names_the_service, bridge_url("redis://redis:6380/0")),
    "url empty": (check_bridge_url_names_the_service, bridge_url("")),
    "service port": (
        check_bridge_url_names_the_service,
        set_at("Service/redis/spec/ports", [{"name": "redis", "port": 6380, "targetPort": "redis"}]),
    ),
    "headless": (check_bridge_url_names_the_service, set_at("Service/redis/spec/clusterIP", "None")),
    "service selector": (
        check_bridge_url_names_the_service,
        set_at("Service/redis/spec/selector", BRIDGE_LABELS),
    ),
    "any pod": (check_only_the_bridge_reaches_redis, ingress_from({"podSelector": {"matchLabels": {}}})),
    "any namespace": (
        check_only_the_bridge_reaches_redis,
        ingress_from({"podSelector": {"matchLabels": BRIDGE_LABELS}, "namespaceSelector": {}}),
    ),
    "inference pods": (
        check_only_the_bridge_reaches_redis,
        ingress_from({"podSelector": {"matchLabels": {"app.kubernetes.io/name": "ortserve"}}}),
    ),
    "every port": (
        check_only_the_bridge_reaches_redis,
        set_at("NetworkPolicy/redis/spec/ingress", [{"from": [{"podSelector": {"matchLabels": BRIDGE_LABELS}}]}]),
    ),
    "no from": (
        check_only_the_bridge_reaches_redis,
        set_at("NetworkPolicy/redis/spec/ingress", [{"ports": [{"port": 6379, "protocol": "TCP"}]}]),
    ),
    "probe": (check_redis_probes, set_at(f"{REDIS}/readinessProbe/exec/command", ["true"])),
    "two replicas": (check_redis_persists, set_at("StatefulSet/redis/spec/replicas", 2)),
    "emptyDir": (
        check_redis_persists,
        set_at("StatefulSet/redis/spec/template/spec/volumes", [{"name": "data", "emptyDir": {}}]),
    ),
    "root": (check_redis_locked_down, set_at("StatefulSet/redis/spec/template/spec/securityContext/runAsUser", 0)),
    "writable root": (check_redis_locked_down, set_at(f"{REDIS}/securityContext/readOnlyRootFilesystem", False)),
}


@pytest.mark.parametrize("name", MUTATIONS)
def test_each_contract_check_fails_on_a_broken_manifest(objs: list[Obj], name: str) -> None:
    check, mutate = MUTATIONS[name]
    broken = copy.deepcopy(objs)
    mutate(broken)
    with pytest.raises(AssertionError):
        check(broken)


# --- docker-compose.yml parity, disruption, start-up ------------------------------------------------------------


def test_redis_is_the_compose_redis(objs: list[Obj], compose: dict[str, Any]) -> None:
    service = compose_defaults(compose)["redis"]
    redis = redis_container(objs)
    assert redis["image"] == service["image"] == "redis:7.4-alpine"
    assert "command" not in redis  # the image's entrypoint stays, as in compose
    assert redis["args"] == service["command"]  # append-only file, no RDB snapshots
    test = service["healthcheck"]["test"]
    assert test[0] == "CMD" and exec_probe(redis, "readiness") == test[1:]
    assert DATA_DIR in {volume.split(":")[1] for volume in service["volumes"]}


def test_no_disruption_budget_holds_the_single_redis(objs: list[Obj]) -> None:
    # minAvailable 1 of 1 pod would block every node drain; the bridges fail open while Redis restarts
    labels = pod_labels(find(objs, "StatefulSet", "redis"))
    pdbs = [o for o in objs if o["kind"] == "PodDisruptionBudget"]
    assert pdbs and not any(selects(p["spec"]["selector"]["matchLabels"], labels) for p in pdbs)


def test_the_bridge_does_not_wait_for_redis(objs: list[Obj]) -> None:
    # fail open (http_bridge/accounts/failover_counters.py): a bridge without Redis serves with per-pod counters, so
    # neither an init container nor its readiness waits for Redis
    bridge = find(objs, "Deployment", "bridge")
    assert not bridge["spec"]["template"]["spec"].get("initContainers")
    assert container(bridge, "bridge")["readinessProbe"]["httpGet"]["path"] == "/health/ready"


# --- components/external-redis ------------------------------------------------------------------------------------


def test_external_redis_drops_ours_and_reads_the_url_from_a_secret(external: list[Obj]) -> None:
    assert not [o for o in external if o["metadata"]["name"] == "redis"]
    env = container(find(external, "Deployment", "bridge"), "bridge")["env"]
    assert [e for e in env if e["name"] == "ORTSERVE_BRIDGE_REDIS_URL"] == [
        {
            "name": "ORTSERVE_BRIDGE_REDIS_URL",
            "valueFrom": {"secretKeyRef": {"name": "ortserve-redis", "key": "url", "optional": False}},
        }
    ]
    ours = container(find(kustomize_build(KUBERNETES_DIR / "overlays" / "gpu"), "Deployment", "bridge"), "bridge")
    assert sorted(e["name"] for e in env) == sorted(e["name"] for e in ours["env"])  # the rest stays


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_external_redis_matches_the_schemas(external: list[Obj], version: str) -> None:
    for obj in external:
        kubernetes_validate.validate(obj, version, strict=True)


def test_external_redis_documents_its_secret() -> None:
    docs = (ROOT / "docs" / "deployment.md").read_text()
    assert "components/external-redis" in docs and "ortserve-redis" in docs
