"""An InferenceServer around any engine-shaped object, for tests of the server itself (health, ports, keepalive)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from inference_service.server.app import InferenceServer
from inference_service.server.settings import ServiceSettings


def server_for(engine: Any = None, **settings: Any) -> InferenceServer:
    """One model "m" on `engine` (default: one with just a context length), ServiceSettings(port=0, **settings)."""
    engine = engine if engine is not None else SimpleNamespace(context_length=64)
    model = SimpleNamespace(model_id="m", names=("m",), engine=engine, execution_provider="CPU", precision="test")
    return InferenceServer(ServiceSettings(**{"port": 0, **settings}), {"m": cast(Any, model)})
