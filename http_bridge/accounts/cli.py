"""`python -m http_bridge keys create|list|revoke|update` and `python -m http_bridge usage`.

Edits hold an exclusive lock on the keys file and rewrite it in place (same inode): a running bridge reloads it
(key_ring.py), also through a bind mount such as a compose secret, which a rename would leave on the old file.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import fcntl
import json
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from http_bridge.accounts.failover_counters import open_redis
from http_bridge.accounts.keys import KeyFileError, KeyRecord, append_key, parse_key_records, read_key_records
from http_bridge.accounts.redis_counters import RedisCounters
from http_bridge.accounts.usage import days_between, usage_page
from http_bridge.errors import BridgeError
from http_bridge.settings import BridgeSettings


class CliError(Exception):
    """A clear message for the operator; exit status 2."""


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be ≥ 0 (0 = no limit)")
    return value


def _models(text: str) -> tuple[str, ...] | None:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    return None if not names or names == ("*",) else names


def _expiry(text: str) -> int | None:
    """`never`, unix seconds, a date (YYYY-MM-DD, UTC midnight) or a duration from now (`30d`, `12h`)."""
    if text == "never":
        return None
    if text.isdigit():
        return int(text)
    units = {"d": 86_400, "h": 3_600, "m": 60}
    if text[:-1].isdigit() and text[-1:] in units:
        return int(dt.datetime.now(dt.UTC).timestamp()) + int(text[:-1]) * units[text[-1]]
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected never, unix seconds, YYYY-MM-DD or a duration like 30d") from None
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())


ATTRIBUTES = ("models", "rpm", "tpm", "expires", "admin", "disabled")


def _add_attribute_flags(parser: argparse.ArgumentParser) -> None:
    """Flags absent from the namespace unless given (SUPPRESS), so `update` changes only what was asked."""
    add = parser.add_argument
    add("--models", type=_models, default=argparse.SUPPRESS, help="comma-separated model ids (* = every model)")
    add("--rpm", type=_non_negative, default=argparse.SUPPRESS, help="requests per window (0 = no limit)")
    add("--tpm", type=_non_negative, default=argparse.SUPPRESS, help="tokens per window (0 = no limit)")
    add("--expires", type=_expiry, default=argparse.SUPPRESS, help="never, unix s, YYYY-MM-DD (UTC) or 30d / 12h")
    add("--admin", action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help="may read GET /v1/usage")


def parse_keys_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ortserve-bridge keys", description="manage API keys")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create a key, print it once, append only its sha256 to the file")
    create.add_argument("--file", type=Path, required=True, help="keys file (created when missing)")
    create.add_argument("--name", help="a label stored next to the hash (unique; shown in usage and metrics)")
    _add_attribute_flags(create)
    listing = commands.add_parser("list", help="the keys' names and attributes (never the keys)")
    listing.add_argument("--file", type=Path, required=True)
    listing.add_argument("--json", action="store_true", help="one JSON object per key")
    edits = (("revoke", "disable a key (kept in the file for its usage history)"), ("update", "change a key"))
    for name, text in edits:
        command = commands.add_parser(name, help=text)
        command.add_argument("--file", type=Path, required=True)
        command.add_argument("--name", required=True, help="the key's name (see `keys list`)")
        if name == "update":
            _add_attribute_flags(command)
            command.add_argument(
                "--disabled", action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help="refuse the key"
            )
    return parser.parse_args(argv)


def _attributes(args: argparse.Namespace) -> dict[str, Any]:
    given = vars(args)
    changes = {name: given[name] for name in ATTRIBUTES if name in given}
    for name in ("rpm", "tpm"):
        if name in changes:
            changes[name] = changes[name] or None  # 0 = no limit
    return changes


def _edit(path: Path, name: str, changes: dict[str, Any]) -> KeyRecord:
    """Apply `changes` to the key named `name`, rewriting the file in place under an exclusive lock."""
    try:
        handle = path.open("r+", encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot open {path}: {exc.strerror}") from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        records = parse_key_records(handle.read(), path)
        matches = [i for i, record in enumerate(records) if record.name == name]
        if len(matches) != 1:
            raise CliError(f"{path}: {len(matches)} keys are named {name!r} (expected exactly one)")
        records[matches[0]] = updated = replace(records[matches[0]], **changes)
        handle.seek(0)
        handle.write("".join(json.dumps(record.to_json()) + "\n" for record in records))
        handle.truncate()
        handle.flush()
    return updated


def _describe(record: KeyRecord) -> dict[str, Any]:
    shown = record.to_json()
    shown["sha256"] = record.sha256[:8] + "…"  # enough to tell keys apart, not a usable digest
    shown.setdefault("models", "*")
    return shown


def keys_main(argv: Sequence[str]) -> None:
    args = parse_keys_args(argv)
    try:
        if args.command == "create":
            if args.name and any(r.name == args.name for r in _existing(args.file)):
                raise CliError(f"{args.file}: a key named {args.name!r} exists already")
            key = append_key(args.file, args.name, **_attributes(args))
            print(key)  # shown once; only its hash is stored
            print(f"stored its sha256 in {args.file}; this key cannot be shown again", file=sys.stderr)
        elif args.command == "list":
            for record in read_key_records(args.file):
                shown = _describe(record)
                print(json.dumps(shown) if args.json else "  ".join(f"{k}={v}" for k, v in shown.items()))
        else:
            changes = {"disabled": True} if args.command == "revoke" else _attributes(args)
            record = _edit(args.file, args.name, changes)
            print(json.dumps(_describe(record)))
    except (CliError, KeyFileError) as exc:
        sys.stderr.write(f"ortserve-bridge keys: error: {exc}\n")
        raise SystemExit(2) from None


def _existing(path: Path) -> list[KeyRecord]:
    return read_key_records(path) if path.exists() else []


def parse_usage_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="ortserve-bridge usage",
        description="per-key usage by UTC day, read from Redis (ORTSERVE_BRIDGE_REDIS_URL or --redis-url); "
        "without Redis each bridge keeps its own: ask it with GET /v1/usage",
    )
    parser.add_argument("--redis-url", help="default: ORTSERVE_BRIDGE_REDIS_URL")
    parser.add_argument("--start-date", help="YYYY-MM-DD (default today, UTC)")
    parser.add_argument("--end-date", help="YYYY-MM-DD, inclusive (default: start date)")
    parser.add_argument("--api-key-name", help="only this key name")
    parser.add_argument("--model", help="only this model")
    parser.add_argument("--json", action="store_true", help="the JSON of GET /v1/usage")
    return parser.parse_args(argv)


async def _read_usage(url: str, days: list[str]) -> list[Any]:
    client = open_redis(url, timeout_s=5.0)
    try:
        return await RedisCounters(client).usage(days)
    finally:
        await client.aclose()


def usage_main(argv: Sequence[str]) -> None:
    args = parse_usage_args(argv)
    url = args.redis_url or BridgeSettings().redis_url
    try:
        if not url:
            raise CliError("no Redis URL (--redis-url or ORTSERVE_BRIDGE_REDIS_URL); without Redis, use GET /v1/usage")
        days = days_between(args.start_date, args.end_date)
        page = usage_page(days, asyncio.run(_read_usage(url, days)), args.api_key_name, args.model)
    except BridgeError as exc:
        sys.stderr.write(f"ortserve-bridge usage: error: {exc.message}\n")
        raise SystemExit(2) from None
    except CliError as exc:
        sys.stderr.write(f"ortserve-bridge usage: error: {exc}\n")
        raise SystemExit(2) from None
    except Exception as exc:  # Redis unreachable, refused, …: one line, not a traceback
        sys.stderr.write(f"ortserve-bridge usage: error: cannot read usage from Redis: {exc}\n")
        raise SystemExit(1) from None
    if args.json:
        print(page.model_dump_json(indent=2))
        return
    print(f"{'date':<10}  {'key name':<20}  {'model':<28}  {'requests':>9}  {'prompt':>10}  {'completion':>10}")
    for bucket in page.data:
        for r in bucket.results:
            print(
                f"{bucket.date:<10}  {r.api_key_name:<20}  {r.model:<28}  {r.num_model_requests:>9}  "
                f"{r.input_tokens:>10}  {r.output_tokens:>10}"
            )
