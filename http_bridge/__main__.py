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


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="ortserve-bridge",
        description="OpenAI-compatible HTTP bridge to ortserve ('keys create --file PATH' makes an API key)",
    )
    parser.add_argument(
        "--inference-target",
        help="gRPC target of the inference service: host:port, dns:///name:port or ipv4:host:port,host:port,...",
    )
    parser.add_argument("--model-routes", help='JSON object of model id → gRPC target, e.g. \'{"a": "h1:50051"}\'')
    parser.add_argument("--model-routes-file", type=Path, help="JSON file with the model routes object")
    parser.add_argument("--load-balancing", choices=["round_robin", "pick_first"], help="gRPC balancing policy")
    parser.add_argument(
        "--health-check",
        action=argparse.BooleanOptionalAction,
        help="gRPC client-side health checking: skip replicas that are not SERVING",
    )
    parser.add_argument("--tls", action=argparse.BooleanOptionalAction, help="TLS to the inference service")
    parser.add_argument("--tls-ca-file", type=Path, help="CA certificates that sign the inference service's cert")
    parser.add_argument("--tls-cert-file", type=Path, help="client certificate (mutual TLS)")
    parser.add_argument("--tls-key-file", type=Path, help="client private key (mutual TLS)")
    parser.add_argument("--tls-server-name", help="name to verify in the service's certificate")
    parser.add_argument("--ssl-certfile", type=Path, help="HTTPS certificate of the bridge (uvicorn)")
    parser.add_argument("--ssl-keyfile", type=Path, help="HTTPS private key of the bridge (uvicorn)")
    parser.add_argument("--host", help="address to listen on")
    parser.add_argument("--port", type=int, help="port to listen on")
    parser.add_argument("--api-keys-file", type=Path, help="file of API key hashes (made by 'keys create')")
    parser.add_argument("--request-timeout-s", type=float, help="deadline of one generation (s)")
    parser.add_argument("--first-message-timeout-s", type=float, help="streaming: 504 without a first token by then")
    parser.add_argument("--health-timeout-s", type=float, help="timeout of the readiness probe's health checks")
    parser.add_argument("--max-body-bytes", type=int, help="413 for request bodies larger than this")
    parser.add_argument("--max-messages", type=int, help="most messages in one chat request")
    parser.add_argument("--max-message-chars", type=int, help="most characters in one message or text prompt")
    parser.add_argument("--max-stop-sequences", type=int, help="most stop strings in one request")
    parser.add_argument("--max-stop-chars", type=int, help="most characters in one stop string")
    parser.add_argument("--max-choices", type=int, help="most choices in one request (n × prompts)")
    parser.add_argument("--cors-allow-origins", help="comma-separated browser origins allowed by CORS (* = any)")
    parser.add_argument("--log-level", help="CRITICAL, ERROR, WARNING, INFO or DEBUG")
    parser.add_argument("--log-format", choices=["json", "text"], help="JSON lines (default) or text")
    return parser.parse_args(argv)


def parse_keys_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ortserve-bridge keys", description="manage API keys")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create a key, print it once, append only its sha256 to the file")
    create.add_argument("--file", type=Path, required=True, help="keys file (created when missing)")
    create.add_argument("--name", help="a label stored next to the hash")
    return parser.parse_args(argv)


def load_settings(argv: Sequence[str] | None = None) -> BridgeSettings:
    """Environment (ORTSERVE_BRIDGE_*) first, then CLI flags that were given."""
    args = parse_args(argv)
    overrides = {key: value for key, value in vars(args).items() if value is not None}
    return BridgeSettings(**overrides)


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
