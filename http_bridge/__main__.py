"""`python -m http_bridge` / `ortserve-bridge`: run the bridge with uvicorn; `… keys create|list|revoke|update`
manage API keys and `… usage` reports per-key usage (accounts/cli.py)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import uvicorn

from http_bridge.accounts.cli import keys_main, usage_main
from http_bridge.accounts.keys import KeyFileError
from http_bridge.app import create_app
from http_bridge.settings import BridgeSettings
from http_bridge.upstream.routing import RoutesError, load_routes
from ortserve_common.logs import configure_logging
from ortserve_common.settings_flags import add_settings_flags, settings_from_args

PROG = "ortserve-bridge"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="OpenAI-compatible HTTP bridge to ortserve ('keys create --file PATH' makes an API key; "
        "'keys list|revoke|update' and 'usage' manage keys and read their usage)",
    )
    add_settings_flags(parser, BridgeSettings)
    return parser.parse_args(argv)


def load_settings(argv: Sequence[str] | None = None) -> BridgeSettings:
    """Environment (ORTSERVE_BRIDGE_*) first, then CLI flags that were given; invalid values exit with status 2."""
    return settings_from_args(BridgeSettings, parse_args(argv), PROG)


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["keys"]:
        keys_main(argv[1:])
        return
    if argv[:1] == ["usage"]:
        usage_main(argv[1:])
        return
    settings = load_settings(argv)
    configure_logging(settings.log_level, settings.log_format)
    try:
        load_routes(settings)  # a bad routes file fails here, at start
        app = create_app(settings)
    except (KeyFileError, RoutesError) as exc:
        raise SystemExit(f"ortserve-bridge: {exc}") from None
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        log_level=settings.log_level.lower(),
        ssl_certfile=settings.ssl_certfile,
        ssl_keyfile=settings.ssl_keyfile,
        timeout_keep_alive=settings.timeout_keep_alive_s,
    )


if __name__ == "__main__":
    main()
