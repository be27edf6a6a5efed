"""The service refuses an address it cannot have: a port another process listens on (also another service: gRPC's
default SO_REUSEPORT would share it), or an address that is not this host's."""

from __future__ import annotations

import re
import socket
from types import SimpleNamespace
from typing import Any, cast

import pytest

from inference_service.server.app import InferenceServer, ListenError, check_listen
from inference_service.server.settings import ServiceSettings

pytestmark = pytest.mark.anyio


def server_on(port: int) -> InferenceServer:
    engine = SimpleNamespace(context_length=64)
    model = SimpleNamespace(model_id="m", names=("m",), engine=engine, execution_provider="CPU", precision="test")
    return InferenceServer(ServiceSettings(host="127.0.0.1", port=port), {"m": cast(Any, model)})


async def test_a_second_server_on_a_serving_port_is_refused() -> None:
    first = server_on(0)
    await first.server.start()
    try:
        with pytest.raises(ListenError, match=re.escape(f"cannot listen on 127.0.0.1:{first.port}: in use")):
            server_on(first.port)
    finally:
        await first.server.stop(0)


def test_check_listen_refuses_a_taken_port_and_a_foreign_address() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(ListenError, match=re.escape(f"cannot listen on 127.0.0.1:{port}: Address already in use")):
            check_listen("127.0.0.1", port)
    check_listen("127.0.0.1", port)  # free again: closed, and SO_REUSEADDR as the servers bind
    check_listen("127.0.0.1", 0)  # any free port
    with pytest.raises(ListenError, match=re.escape("192.0.2.1:50051: Cannot assign requested address")):
        check_listen("192.0.2.1", 50051)  # TEST-NET-1: no host has it
