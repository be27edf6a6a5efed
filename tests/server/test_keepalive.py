"""Keepalive between the bridge and the service.

- The bridge's channel pings its idle connection (one health watch stream open, no data) and the service accepts
  those pings, so the next call succeeds. gRPC's server defaults answered the third such ping with GOAWAY
  too_many_pings, which failed the bridge's next request with 503 after ~90 s of quiet.
- A service gone silent (its connection open) fails the bridge's open calls once a ping goes unanswered.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from http_bridge.settings import BridgeSettings
from http_bridge.upstream import client
from inference_service.server.app import InferenceServer
from inference_service.server.settings import ServiceSettings
from tests.server.fakes import server_for, settle
from tests.silent_proxy import SilentProxy

pytestmark = pytest.mark.anyio
# The test's client keepalive (the bridge's own is CHANNEL_OPTIONS' 30 s): gRPC sends a client's pings at most once a
# second, so a shorter time would not ping more often.
PING_MS = 1000
QUIET_PINGS = 6  # the quiet spell the call must live through; the control's GOAWAY comes at the fourth ping
READY = health_pb2.HealthCheckRequest(service=client.READY_SERVICE)


def keepalive_time_ms() -> int:
    return next(int(value) for name, value in client.CHANNEL_OPTIONS if name == "grpc.keepalive_time_ms")


BRIDGE_PING_MS = keepalive_time_ms()  # read before a test's options replace it


def test_the_bridges_keepalive_is_no_more_frequent_than_the_service_accepts() -> None:
    assert keepalive_time_ms() >= ServiceSettings().keepalive_min_ping_interval_s * 1000


async def serve(min_ping_interval_s: float) -> InferenceServer:
    server = server_for(host="127.0.0.1", keepalive_min_ping_interval_s=min_ping_interval_s)
    await server.server.start()
    await server.health.set(client.READY_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    return server


@pytest.fixture
def fast_pinging_bridge_options(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bridge's options at PING_MS, every ping sent on time: gRPC's default of two pings without data, then one
    a minute, is two intervals at the bridge's 30 s but 60 at PING_MS, where only a call's data would release the
    next ping (and the control then raced the service's answer to that call, which resets its strikes)."""
    options = [(name, PING_MS if name == "grpc.keepalive_time_ms" else value) for name, value in client.CHANNEL_OPTIONS]
    monkeypatch.setattr(client, "CHANNEL_OPTIONS", [*options, ("grpc.http2.max_pings_without_data", 0)])


async def outcome(response: Awaitable[health_pb2.HealthCheckResponse]) -> object:
    """The status it answers, or its gRPC error."""
    try:
        return (await response).status
    except grpc.aio.AioRpcError as e:
        return e


@contextlib.asynccontextmanager
async def watching(
    server: InferenceServer,
) -> AsyncIterator[tuple[health_pb2_grpc.HealthStub, grpc.aio.UnaryStreamCall]]:
    """A channel with the bridge's options and an idle stream open on it (a health watch, as the bridge's health
    checking keeps), its first answer read; the server stopped after."""
    channel = client.open_channel(f"127.0.0.1:{server.port}", BridgeSettings(health_check=False))
    stub = health_pb2_grpc.HealthStub(channel)
    watch = stub.Watch(READY)
    try:
        await watch.read()
        yield stub, watch
    finally:
        watch.cancel()
        await channel.close()
        await server.server.stop(0)
        await settle()


@pytest.mark.usefixtures("fast_pinging_bridge_options")
async def test_a_call_and_the_open_stream_live_through_a_quiet_spell_of_pings() -> None:
    """Quiet for QUIET_PINGS pings, then a call, and the service turns NOT_SERVING: the call is answered and the open
    watch sees the change. The service accepts pings at the real pair's margin (10 s accepted, the bridge's 30 s)."""
    margin = ServiceSettings().keepalive_min_ping_interval_s * 1000 / BRIDGE_PING_MS
    server = await serve(min_ping_interval_s=PING_MS / 1000 * margin)
    async with watching(server) as (stub, watch):
        await asyncio.sleep(QUIET_PINGS * PING_MS / 1000)
        checked = await outcome(stub.Check(READY, timeout=5))
        await server.health.set(client.READY_SERVICE, health_pb2.HealthCheckResponse.NOT_SERVING)
        watched = await outcome(asyncio.wait_for(watch.read(), timeout=5))
    assert checked == health_pb2.HealthCheckResponse.SERVING
    assert watched == health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.mark.usefixtures("fast_pinging_bridge_options")
async def test_a_service_that_refuses_the_pings_ends_the_connection() -> None:
    """The control, gRPC's server defaults in effect: the same pings on the same idle watch draw GOAWAY
    too_many_pings at the fourth (two strikes allowed), within the other test's quiet spell, and the watch dies with
    it. The service writes nothing on the connection until then, so the watch's next read is that end however late
    the pings run under load: any write (a call's answer, a status change) resets the strikes and raced the GOAWAY."""
    async with watching(await serve(min_ping_interval_s=60)) as (_, watch):
        watched = await outcome(asyncio.wait_for(watch.read(), timeout=10 * QUIET_PINGS * PING_MS / 1000))
    assert isinstance(watched, grpc.aio.AioRpcError), watched
    assert watched.code() == grpc.StatusCode.UNAVAILABLE and "ping" in (watched.details() or "").lower()


class Silent(health_pb2_grpc.HealthServicer):
    async def Watch(self, request, context):  # type: ignore[no-untyped-def]
        yield health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)
        await asyncio.sleep(60)


async def test_a_service_gone_silent_fails_the_bridges_open_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bridge's own options, every keepalive interval and timeout scaled to PING_MS: the open call fails
    UNAVAILABLE within a ping and its timeout, not after gRPC's 60 s ping timeout."""
    timings = {"grpc.keepalive_time_ms", "grpc.keepalive_timeout_ms", "grpc.http2.ping_timeout_ms"}
    scaled = [(name, PING_MS if name in timings else value) for name, value in client.CHANNEL_OPTIONS]
    monkeypatch.setattr(client, "CHANNEL_OPTIONS", scaled)
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(Silent(), server)
    proxy = SilentProxy(server.add_insecure_port("127.0.0.1:0"))
    await server.start()
    channel = client.open_channel(f"127.0.0.1:{proxy.port}", BridgeSettings(health_check=False))
    try:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        await watch.read()
        proxy.silence()
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await asyncio.wait_for(watch.read(), timeout=20 * PING_MS / 1000)
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        proxy.close()
        await channel.close()
        await server.stop(0)
        await settle()
