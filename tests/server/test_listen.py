"""The service refuses an address it cannot have: a port another process listens on (also another service: gRPC's
default SO_REUSEPORT would share it), or an address that is not this host's."""

from __future__ import annotations

import re
import socket

import pytest

from inference_service.server.app import ListenError, check_listen
from tests.server.fakes import server_for, settle

pytestmark = pytest.mark.anyio


async def test_a_second_server_on_a_serving_port_is_refused() -> None:
    first = server_for(host="127.0.0.1")
    await first.server.start()
    try:
        with pytest.raises(ListenError, match=re.escape(f"cannot listen on 127.0.0.1:{first.port}: in use")):
            server_for(host="127.0.0.1", port=first.port)
    finally:
        await first.server.stop(0)
        await settle()


def test_check_listen_refuses_a_taken_port_and_a_foreign_address() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(ListenError, match=re.escape(f"cannot listen on 127.0.0.1:{port}: Address already in use")):
            check_listen("127.0.0.1", port)
    check_listen("127.0.0.1", port)  # free again: closed, and SO_REUSEADDR as the servers bind
    check_listen("127.0.0.1", 0)  # any free port
    with pytest.raises(ListenError, match=re.escape("192.0.2.1:50051: Cannot assign requested address")):
        check_listen("192.0.2.1", 50051)  # TEST-NET-1: no host has it
