"""API keys: random `sk-ortserve-…` tokens, stored only as sha256 hashes (one JSON object per line).

Keys have ~256 bits of entropy, so a fast unsalted hash is enough (no password stretching needed); comparison
is constant-time over the hashes, and a key never appears in logs or error messages.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

KEY_PREFIX = "sk-ortserve-"
_HEX_DIGITS = frozenset("0123456789abcdef")


class KeyFileError(ValueError):
    """The keys file cannot be read or has a malformed line (the message names the line, never a key)."""


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _is_sha256_hex(value: str) -> bool:
    return len(value) == 64 and set(value) <= _HEX_DIGITS


def read_key_file(path: Path) -> list[str]:
    """sha256 hex digests from `path`: JSON lines `{"sha256": …, "name": …}` or bare hex lines; # comments."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise KeyFileError(f"cannot read API keys file {str(path)!r}: {exc.strerror}") from None
    hashes = []
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        digest: object = line
        if line.startswith("{"):
            try:
                digest = json.loads(line).get("sha256")
            except (ValueError, AttributeError):
                digest = None
        if not isinstance(digest, str) or not _is_sha256_hex(digest.lower()):
            # Do not echo the line: it may be a plain key pasted by mistake.
            raise KeyFileError(f"{path}:{number}: expected a sha256 hex digest or a JSON object with 'sha256'")
        hashes.append(digest.lower())
    return hashes


def append_key(path: Path, name: str | None = None) -> str:
    """Create a key, append only its hash (and name, creation time) to `path`; return the key itself."""
    key = new_key()
    record = {"sha256": hash_key(key), "name": name or "", "created": int(time.time())}
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(record) + "\n")
    return key


@dataclass(frozen=True, slots=True)
class KeyStore:
    """The accepted keys as sha256 hashes; empty means authentication is off."""

    hashes: tuple[str, ...] = ()

    @classmethod
    def build(cls, plain_keys: Iterable[str] = (), key_file: Path | None = None) -> KeyStore:
        hashes = [hash_key(key) for key in plain_keys]
        if key_file is not None:
            hashes += read_key_file(key_file)
        return cls(tuple(dict.fromkeys(hashes)))

    @property
    def enabled(self) -> bool:
        return bool(self.hashes)

    def matches(self, given: str) -> bool:
        # Compare with every hash (no early exit) so timing does not reveal which key nearly matched.
        digest = hash_key(given).encode()
        matched = False
        for known in self.hashes:
            matched |= hmac.compare_digest(digest, known.encode())
        return matched
