"""`python -m http_bridge` / `ortserve-bridge`: run the bridge with uvicorn."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import uvicorn

from http_bridge.app import create_app
from http_bridge.request_context import configure_logging
from http_bridge.settings import BridgeSettings


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ortserve-bridge", description="OpenAI-compatible HTTP bridge to ortserve")
    parser.add_argument("--inference-target", help="host:port of the inference service (gRPC)")
    parser.add_argument("--host", help="address to listen on")
    parser.add_argument("--port", type=int, help="port to listen on")
    parser.add_argument("--log-level", help="CRITICAL, ERROR, WARNING, INFO or DEBUG")
    return parser.parse_args(argv)


def load_settings(argv: Sequence[str] | None = None) -> BridgeSettings:
    """Environment (ORTSERVE_BRIDGE_*) first, then CLI flags that were given."""
    args = parse_args(argv)
    overrides = {key: value for key, value in vars(args).items() if value is not None}
    return BridgeSettings(**overrides)


def main(argv: Sequence[str] | None = None) -> None:
    settings = load_settings(argv)
    configure_logging(settings.log_level)
    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, log_level=settings.log_level.lower())


if __name__ == "__main__":
    main()
