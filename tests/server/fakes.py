"""An InferenceServer around any engine-shaped object, for tests of the server itself (health, ports, keepalive),
and the clean-up those tests end with."""

from __future__ import annotations

import asyncio
import gc
from types import SimpleNamespace
from typing import Any, cast

from inference_service.server.app import InferenceServer
from inference_service.server.settings import ServiceSettings


def server_for(engine: Any = None, **settings: Any) -> InferenceServer:
    """One model "m" on `engine` (default: one with just a context length), ServiceSettings(port=0, **settings)."""
    engine = engine if engine is not None else SimpleNamespace(context_length=64)
    model = SimpleNamespace(model_id="m", names=("m",), engine=engine, execution_provider="CPU", precision="test")
    return InferenceServer(ServiceSettings(**{"port": 0, **settings}), {"m": cast(Any, model)})


async def settle() -> None:
    """Let late completions of this test's gRPC objects land on its own event loop. grpc.aio hands a completion to
    the loop its call was made on; after that loop is closed, a later test's loop gets "Event loop is closed"."""
    gc.collect()
    await asyncio.sleep(0.1)
