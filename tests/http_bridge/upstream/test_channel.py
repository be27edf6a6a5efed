"""The bridge's channel against in-process grpc.aio replicas on 127.0.0.1: round robin, health-aware picking, TLS."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from http_bridge.settings import BridgeSettings
from http_bridge.upstream.client import (
    READY_SERVICE,
    InferenceClient,
    channel_credentials,
    open_channel,
    service_config,
)
from inference_service.api.v1 import model_pb2, model_pb2_grpc
from inference_service.server.app import server_credentials
from inference_service.server.settings import ServiceSettings
from tests.e2e.certs import Pki, make_pki

pytestmark = pytest.mark.anyio
SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


class NamedModels(model_pb2_grpc.ModelServiceServicer):
    """ListModels answers with the replica's name, so the caller sees who served it."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def ListModels(self, request, context):  # type: ignore[no-untyped-def]
        return model_pb2.ListModelsResponse(models=[model_pb2.ModelInfo(id=self.name)])


@dataclass
class Replica:
    server: grpc.aio.Server
    health: health.aio.HealthServicer
    port: int


async def start_replica(name: str, credentials: grpc.ServerCredentials | None = None) -> Replica:
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    model_pb2_grpc.add_ModelServiceServicer_to_server(NamedModels(name), server)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    address = "127.0.0.1:0"
    port = server.add_insecure_port(address) if credentials is None else server.add_secure_port(address, credentials)
    await server.start()
    await servicer.set(READY_SERVICE, SERVING)
    return Replica(server, servicer, port)


@pytest.fixture
async def replicas() -> AsyncIterator[tuple[Replica, Replica]]:
    a, b = await start_replica("a"), await start_replica("b")
    yield a, b
    await asyncio.gather(a.server.stop(0), b.server.stop(0))


async def served_by(client: InferenceClient, calls: int = 20) -> dict[str, int]:
    names = [(await client.list_models())[0].id for _ in range(calls)]
    return {name: names.count(name) for name in sorted(set(names))}


async def served_once(
    client: InferenceClient, expected: Callable[[dict[str, int]], bool], timeout: float = 10.0
) -> dict[str, int]:
    """`served_by` polled until `expected` holds or `timeout` passes (the health watch stream and the channel's
    connectivity deliver a change asynchronously); an RPC error before the deadline counts as "not yet"."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        past_deadline = asyncio.get_running_loop().time() >= deadline
        try:
            counts = await served_by(client)
        except grpc.aio.AioRpcError:
            if past_deadline:
                raise
        else:
            if expected(counts) or past_deadline:
                return counts
        await asyncio.sleep(0.05)


def spread(counts: dict[str, int]) -> bool:
    """Both replicas took a fair share (the first picks may come before the second connection is ready)."""
    return sorted(counts) == ["a", "b"] and min(counts.values()) >= 7


def test_service_config() -> None:
    assert json.loads(service_config("round_robin", True)) == {
        "loadBalancingConfig": [{"round_robin": {}}],
        "healthCheckConfig": {"serviceName": READY_SERVICE},
    }
    assert "healthCheckConfig" not in json.loads(service_config("pick_first", False))


async def test_round_robin_skips_replicas_that_are_not_serving_or_gone(replicas: tuple[Replica, Replica]) -> None:
    a, b = replicas
    target = f"ipv4:127.0.0.1:{a.port},127.0.0.1:{b.port}"
    async with open_channel(target, BridgeSettings(_env_file=None)) as channel:
        client = InferenceClient(channel)
        assert spread(await served_by(client))
        await a.health.set(READY_SERVICE, NOT_SERVING)
        assert await served_once(client, lambda counts: counts == {"b": 20}) == {"b": 20}
        await a.health.set(READY_SERVICE, SERVING)
        assert spread(await served_once(client, spread))
        await b.server.stop(0)
        assert await served_once(client, lambda counts: counts == {"a": 20}) == {"a": 20}
        assert await client.health(1) is True  # one SERVING replica is enough for the target


async def test_without_health_checking_a_not_serving_replica_still_gets_requests(
    replicas: tuple[Replica, Replica],
) -> None:
    a, b = replicas
    await a.health.set(READY_SERVICE, NOT_SERVING)
    settings = BridgeSettings(_env_file=None, health_check=False)
    async with open_channel(f"ipv4:127.0.0.1:{a.port},127.0.0.1:{b.port}", settings) as channel:
        assert spread(await served_by(InferenceClient(channel)))


async def test_no_serving_replica_fails_fast_and_is_not_ready(replicas: tuple[Replica, Replica]) -> None:
    a, b = replicas
    for replica in replicas:
        await replica.health.set(READY_SERVICE, NOT_SERVING)
    async with open_channel(f"ipv4:127.0.0.1:{a.port},127.0.0.1:{b.port}", BridgeSettings(_env_file=None)) as channel:
        client = InferenceClient(channel)
        assert await client.health(1) is False
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await client.list_models()
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls_service(pki: Pki, mutual: bool) -> ServiceSettings:
    return ServiceSettings(
        _env_file=None,  # type: ignore[call-arg]
        tls_cert_file=pki.server.cert,
        tls_key_file=pki.server.key,
        tls_client_ca_file=pki.ca if mutual else None,
    )


async def reachable(target: str, settings: BridgeSettings) -> bool:
    async with open_channel(target, settings) as channel:
        return await InferenceClient(channel).health(2)


async def test_tls_and_mutual_tls(pki: Pki) -> None:
    tls = await start_replica("tls", server_credentials(tls_service(pki, mutual=False)))
    mtls = await start_replica("mtls", server_credentials(tls_service(pki, mutual=True)))
    try:
        ca_only = BridgeSettings(_env_file=None, tls_ca_file=pki.ca)
        with_cert = ca_only.model_copy(update={"tls_cert_file": pki.client.cert, "tls_key_file": pki.client.key})
        rogue_pair = {"tls_cert_file": pki.rogue_client.cert, "tls_key_file": pki.rogue_client.key}
        rogue = ca_only.model_copy(update=rogue_pair)
        plaintext = BridgeSettings(_env_file=None)
        assert await reachable(f"127.0.0.1:{tls.port}", ca_only)
        assert await reachable(f"localhost:{tls.port}", with_cert)
        assert not await reachable(f"127.0.0.1:{tls.port}", plaintext)
        assert not await reachable(f"127.0.0.1:{tls.port}", BridgeSettings(_env_file=None, tls=True))  # system roots
        assert await reachable(f"127.0.0.1:{mtls.port}", with_cert)
        assert not await reachable(f"127.0.0.1:{mtls.port}", ca_only)  # no client certificate
        assert not await reachable(f"127.0.0.1:{mtls.port}", rogue)  # certificate from another CA
        assert not await reachable(f"127.0.0.1:{mtls.port}", plaintext)
        # A static list's authority is the whole list: name the certificate's host explicitly.
        listed = f"ipv4:127.0.0.1:{mtls.port},127.0.0.1:{mtls.port}"
        assert not await reachable(listed, with_cert)
        assert await reachable(listed, with_cert.model_copy(update={"tls_server_name": "localhost"}))
    finally:
        await asyncio.gather(tls.server.stop(0), mtls.server.stop(0))


def test_tls_settings_are_checked(tmp_path: Path) -> None:
    assert channel_credentials(BridgeSettings(_env_file=None)) is None
    assert BridgeSettings(_env_file=None, tls_ca_file=tmp_path).tls_enabled
    with pytest.raises(ValueError, match="tls_cert_file and tls_key_file"):
        BridgeSettings(_env_file=None, tls_cert_file=tmp_path)
    with pytest.raises(ValueError, match="ssl_certfile and ssl_keyfile"):
        BridgeSettings(_env_file=None, ssl_keyfile=tmp_path)
    with pytest.raises(ValueError, match="go together"):
        ServiceSettings(_env_file=None, tls_key_file=tmp_path)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="mutual TLS"):
        ServiceSettings(_env_file=None, tls_client_ca_file=tmp_path)  # type: ignore[call-arg]
    assert server_credentials(ServiceSettings(_env_file=None)) is None  # type: ignore[call-arg]
