"""`python -m http_bridge` / `ortserve-bridge`: run the bridge with uvicorn; `… keys create` makes an API key."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import uvicorn

from http_bridge.app import create_app
from http_bridge.keys import KeyFileError, append_key
from http_bridge.logs import configure_logging
from http_bridge.routing import RoutesError, load_routes
from http_bridge.settings import BridgeSettings
from http_bridge.settings_flags import add_settings_flags, settings_from_args

PROG = "ortserve-bridge"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="OpenAI-compatible HTTP bridge to ortserve ('keys create --file PATH' makes an API key)",
    )
    add_settings_flags(parser, BridgeSettings)
    return parser.parse_args(argv)


def parse_keys_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ortserve-bridge keys", description="manage API keys")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create a key, print it once, append only its sha256 to the file")
    create.add_argument("--file", type=Path, required=True, help="keys file (created when missing)")
    create.add_argument("--name", help="a label stored next to the hash")
    return parser.parse_args(argv)


def load_settings(argv: Sequence[str] | None = None) -> BridgeSettings:
    """Environment (ORTSERVE_BRIDGE_*) first, then CLI flags that were given; invalid values exit with status 2."""
    return settings_from_args(BridgeSettings, parse_args(argv), PROG)


def keys_main(argv: Sequence[str]) -> None:
    args = parse_keys_args(argv)
    key = append_key(args.file, args.name)
    print(key)  # shown once; only its hash is stored
    print(f"stored its sha256 in {args.file}; this key cannot be shown again", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["keys"]:
        keys_main(argv[1:])
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
    )


if __name__ == "__main__":
    main()
