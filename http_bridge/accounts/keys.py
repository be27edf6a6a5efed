"""API keys: random `sk-ortserve-…` tokens, stored only as sha256 hashes, one per line, with their attributes.

A line is a bare sha256 hex digest (a key with no name and no limits) or a JSON object:
`{"sha256": …, "name": …, "models": [...], "rpm": N, "tpm": N, "expires": UNIX_S, "disabled": false, "admin": false}`
(every field but sha256 optional; missing or null = no restriction). Keys have ~256 bits of entropy, so a fast
unsalted hash is enough (no password stretching needed); comparison is constant-time over the hashes, and a key
never appears in logs or error messages.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KEY_PREFIX = "sk-ortserve-"
UNNAMED = "unnamed"  # usage and metrics label of keys without a name (bare hash lines, ORTSERVE_BRIDGE_API_KEYS)
_HEX_DIGITS = frozenset("0123456789abcdef")
_LIMIT_FIELDS = ("rpm", "tpm", "expires")


class KeyFileError(ValueError):
    """The keys file cannot be read or has a malformed line (the message names the line, never a key)."""


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One accepted key: its hash and what it may do. `models` None = every model; rpm/tpm None = unlimited."""

    sha256: str
    name: str = ""
    models: tuple[str, ...] | None = None
    rpm: int | None = None
    tpm: int | None = None
    expires: int | None = None  # unix seconds
    disabled: bool = False
    admin: bool = False
    created: int | None = None

    @property
    def label(self) -> str:
        """The name used in usage and metrics (never the key or its hash)."""
        return self.name or UNNAMED

    @property
    def limited(self) -> bool:
        return self.rpm is not None or self.tpm is not None

    def allows(self, model: str) -> bool:
        return self.models is None or model in self.models

    def expired(self, now: float) -> bool:
        return self.expires is not None and now >= self.expires

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {"sha256": self.sha256, "name": self.name}
        if self.created is not None:
            record["created"] = self.created
        if self.models is not None:
            record["models"] = list(self.models)
        for name in _LIMIT_FIELDS:
            if getattr(self, name) is not None:
                record[name] = getattr(self, name)
        if self.disabled:
            record["disabled"] = True
        if self.admin:
            record["admin"] = True
        return record


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _is_sha256_hex(value: str) -> bool:
    return len(value) == 64 and set(value) <= _HEX_DIGITS


def _record_from_json(obj: object, where: str) -> KeyRecord:
    if not isinstance(obj, dict):
        raise KeyFileError(f"{where}: expected a sha256 hex digest or a JSON object with 'sha256'")
    digest = obj.get("sha256")
    if not isinstance(digest, str) or not _is_sha256_hex(digest.lower()):
        raise KeyFileError(f"{where}: expected a sha256 hex digest or a JSON object with 'sha256'")
    name = obj.get("name") or ""
    if not isinstance(name, str):
        raise KeyFileError(f"{where}: 'name' must be a string")
    models = obj.get("models")
    if models is not None and (not isinstance(models, list) or not all(isinstance(m, str) and m for m in models)):
        raise KeyFileError(f"{where}: 'models' must be a list of model ids (or null for every model)")
    numbers: dict[str, int | None] = {}
    for key in (*_LIMIT_FIELDS, "created"):
        value = obj.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise KeyFileError(f"{where}: {key!r} must be a non-negative integer (or null)")
        numbers[key] = value
    flags = {}
    for key in ("disabled", "admin"):
        value = obj.get(key, False)
        if not isinstance(value, bool):
            raise KeyFileError(f"{where}: {key!r} must be true or false")
        flags[key] = value
    return KeyRecord(
        sha256=digest.lower(),
        name=name,
        models=tuple(models) if models is not None else None,
        rpm=numbers["rpm"],
        tpm=numbers["tpm"],
        expires=numbers["expires"],
        created=numbers["created"],
        disabled=flags["disabled"],
        admin=flags["admin"],
    )


def parse_key_records(text: str, path: Path) -> list[KeyRecord]:
    """The records of a keys file's text; # comments and blank lines are skipped."""
    records = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path}:{number}"
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError:
                obj = None  # do not echo the line: it may be a plain key pasted by mistake
            records.append(_record_from_json(obj, where))
        elif _is_sha256_hex(line.lower()):
            records.append(KeyRecord(sha256=line.lower()))
        else:
            raise KeyFileError(f"{where}: expected a sha256 hex digest or a JSON object with 'sha256'")
    return records


def read_key_records(path: Path) -> list[KeyRecord]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise KeyFileError(f"cannot read API keys file {str(path)!r}: {exc.strerror}") from None
    return parse_key_records(text, path)


def append_key(path: Path, name: str | None = None, **attributes: Any) -> str:
    """Create a key, append only its hash (name, creation time, attributes) to `path`; return the key itself."""
    key = new_key()
    record = KeyRecord(sha256=hash_key(key), name=name or "", created=int(time.time()), **attributes)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(record.to_json()) + "\n")
    return key


@dataclass(frozen=True, slots=True)
class KeyStore:
    """The accepted keys; no keys means authentication is off, unless `required` (key_ring.py keeps it on)."""

    records: tuple[KeyRecord, ...] = ()
    required: bool = field(default=False, compare=False)

    @classmethod
    def build(cls, plain_keys: Iterable[str] = (), key_file: Path | None = None) -> KeyStore:
        records = [KeyRecord(sha256=hash_key(key)) for key in plain_keys]
        if key_file is not None:
            records += read_key_records(key_file)
        unique: dict[str, KeyRecord] = {}
        for record in records:
            unique.setdefault(record.sha256, record)  # the first line of a hash wins
        return cls(tuple(unique.values()))

    @property
    def enabled(self) -> bool:
        return bool(self.records) or self.required

    def find(self, given: str) -> KeyRecord | None:
        # Compare with every hash (no early exit) so timing does not reveal which key nearly matched.
        digest = hash_key(given).encode()
        found = None
        for record in self.records:
            if hmac.compare_digest(digest, record.sha256.encode()):
                found = record
        return found
