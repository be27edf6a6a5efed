"""TLS on real processes: the inference service with mutual TLS, the bridge as its client and over HTTPS.

Certificates are made at test time (tests/e2e/certs.py). Bridge ⇄ service variants without a model are covered
in-process by tests/http_bridge/upstream/test_channel.py.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.e2e.certs import Pki, make_pki
from tests.e2e.conftest import MODEL_ID, Process, free_port, start, wait_until
from tests.e2e.fleet import READY, chat, serve_args

pytestmark = pytest.mark.e2e


@dataclass
class TlsService:
    target: str
    pki: Pki
    process: Process


def health_over(channel: grpc.Channel) -> int:
    request = health_pb2.HealthCheckRequest(service=READY)
    return int(health_pb2_grpc.HealthStub(channel).Check(request, timeout=5).status)


def credentials(pki: Pki, pair: str | None) -> grpc.ChannelCredentials:
    if pair is None:
        return grpc.ssl_channel_credentials(pki.ca.read_bytes())
    keys = getattr(pki, pair)
    return grpc.ssl_channel_credentials(pki.ca.read_bytes(), keys.key.read_bytes(), keys.cert.read_bytes())


@pytest.fixture(scope="module")
def service(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsService]:
    folder = tmp_path_factory.mktemp("tls")
    pki = make_pki(folder)
    port = free_port()
    tls = ["--tls-cert-file", str(pki.server.cert), "--tls-key-file", str(pki.server.key)]
    args = serve_args(model_dir, MODEL_ID, port, free_port(), *tls, "--tls-client-ca-file", str(pki.ca))
    process = start("inference-mtls", args, folder)
    target = f"127.0.0.1:{port}"

    def serving() -> bool:
        with grpc.secure_channel(target, credentials(pki, "client")) as channel:
            return health_over(channel) == health_pb2.HealthCheckResponse.SERVING

    try:
        wait_until(serving, process)
        yield TlsService(target, pki, process)
    finally:
        process.stop()


@pytest.mark.parametrize("pair", [None, "rogue_client"])
def test_clients_without_a_valid_certificate_are_refused(service: TlsService, pair: str | None) -> None:
    with grpc.secure_channel(service.target, credentials(service.pki, pair)) as channel, pytest.raises(grpc.RpcError):
        health_over(channel)


def test_plaintext_client_is_refused(service: TlsService) -> None:
    with grpc.insecure_channel(service.target) as channel, pytest.raises(grpc.RpcError) as caught:
        health_over(channel)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]


def start_bridge(service: TlsService, folder: Path, *client_cert: str) -> tuple[Process, str]:
    pki, port = service.pki, free_port()
    args = ["-m", "http_bridge", "--inference-target", service.target, "--port", str(port)]
    args += ["--tls-ca-file", str(pki.ca), *client_cert]
    args += ["--ssl-certfile", str(pki.server.cert), "--ssl-keyfile", str(pki.server.key)]  # HTTPS, same cert
    return start(f"bridge-tls-{port}", args, folder), f"https://127.0.0.1:{port}"


def test_bridge_with_client_certificate_over_https(service: TlsService, tmp_path: Path) -> None:
    pki = service.pki
    client_cert = ("--tls-cert-file", str(pki.client.cert), "--tls-key-file", str(pki.client.key))
    bridge, base = start_bridge(service, tmp_path, *client_cert)
    try:
        with httpx.Client(base_url=base, verify=ssl.create_default_context(cafile=pki.ca), timeout=60) as http:
            wait_until(lambda: http.get("/health/ready").status_code == 200, bridge)
            response = http.post("/v1/chat/completions", json=chat(MODEL_ID))
            assert response.status_code == 200, response.text
            assert response.json()["choices"][0]["message"]["content"]
        with pytest.raises(httpx.ConnectError):  # HTTPS only: an untrusted certificate is rejected by clients
            httpx.get(f"{base}/health", timeout=5)
    finally:
        bridge.stop()


def test_bridge_without_client_certificate_is_not_ready(service: TlsService, tmp_path: Path) -> None:
    bridge, base = start_bridge(service, tmp_path)
    try:
        with httpx.Client(base_url=base, verify=ssl.create_default_context(cafile=service.pki.ca), timeout=30) as http:
            wait_until(lambda: http.get("/health").status_code == 200, bridge)
            assert http.get("/health/ready").status_code == 503
            assert http.post("/v1/chat/completions", json=chat(MODEL_ID)).status_code == 503
    finally:
        bridge.stop()
